"""GET /calls/{key}/recording (HTTP Range, audited before the first byte) and /verify."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from callrec.api import audit, objects, queries, ranges, signing, verify
from callrec.api.deps import AppState, Auditor, State, authenticate, client_addr
from callrec.api.errors import MissingObject
from callrec.api.recording_cache import Identity
from callrec.api.routes.calls import AUTH_ERRORS, NOT_FOUND
from callrec.api.schemas import CheckPublic, Problem, VerifyPublic
from callrec.api.tokens import Principal, Role
from callrec.avro.events import AccessAction
from callrec.sinks.manifests import PUBLIC_KEY_OBJECT, manifest_key

router = APIRouter(prefix="/calls", tags=["recordings"])
WHOLE_BELOW = 1024 * 1024
AUDIO_TYPES = ["audio/wav", "audio/flac", "audio/ogg", "audio/mpeg"]


def caller(request: Request, state: State, call_key: str, purpose: str,
           tid: str | None, exp: int | None, sig: str | None) -> Principal:
    """A bearer header, or a signed URL for exactly this call, purpose and a live token."""
    if request.headers.get("authorization") or sig is None:
        return authenticate(request, state)
    if tid is None or exp is None or not signing.valid(
            state.signing_key, call_key, tid, purpose, exp, sig, time.time()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "playback URL is invalid or expired; ask for a new one",
                            headers={"WWW-Authenticate": 'Bearer realm="callrec"'})
    who = state.tokens.principal(tid)
    if who is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the token of this URL is revoked",
                            headers={"WWW-Authenticate": 'Bearer realm="callrec"'})
    return who


@dataclass(frozen=True)
class Planned:
    """What a GET of the recording would send, decided before any I/O but the row's."""

    who: Principal
    rec: sqlite3.Row
    part: ranges.Slice
    headers: dict[str, str]

    @property
    def code(self) -> int:
        return 206 if self.part.partial else 200


def plan(call_key: str, request: Request, state: AppState, download: bool, tid: str | None,
         exp: int | None, sig: str | None) -> Planned | Response:
    """The caller, the row, the slice and the headers; or the 416 to answer."""
    purpose = "download" if download else "play"
    who = caller(request, state, call_key, purpose, tid, exp, sig)
    if download and who.role < Role.auditor:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "downloading needs the auditor role")
    # A primary-key read of a WAL database (tens of microseconds, never blocked by the
    # writer): cheaper on the event loop than the hop to a thread and back.
    rec = queries.get_recording(state.db(), call_key)
    if rec is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no recording of call {call_key}")
    etag = f'"{rec["sha256"]}"'
    size = rec["size_bytes"]
    try:
        part = ranges.choose(request.headers.get("range"), request.headers.get("if-range"),
                             etag, size)
    except ranges.Unsatisfiable:
        return Response(status_code=status.HTTP_416_RANGE_NOT_SATISFIABLE,
                        headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes",
                                 "ETag": etag})
    extension = rec["object_key"].rsplit(".", 1)[-1]
    name = quote(f"{call_key}.{extension}", safe="")
    headers = {
        "Accept-Ranges": "bytes", "ETag": etag, "Content-Length": str(part.length),
        "Cache-Control": "private, no-store",
        "Content-Type": objects.content_type(rec["format"]),
        "Content-Disposition": f"{'attachment' if download else 'inline'}; "
                               f"filename*=UTF-8''{name}",
    }
    if part.partial:
        headers["Content-Range"] = part.content_range
    return Planned(who, rec, part, headers)


RECORDING_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The whole recording",
          "content": {t: {"schema": {"type": "string", "format": "binary"}}
                      for t in AUDIO_TYPES}},
    206: {"description": "The requested byte range",
          "content": {t: {"schema": {"type": "string", "format": "binary"}}
                      for t in AUDIO_TYPES}},
    **AUTH_ERRORS, **NOT_FOUND,
    416: {"description": "The range lies outside the recording"},
}
Download = Annotated[bool, Query(description="Send as an attachment (auditor)")]
TokenId = Annotated[str | None, Query(max_length=64)]
Expiry = Annotated[int | None, Query(ge=0, le=2**62)]
Signature = Annotated[str | None, Query(max_length=128)]


@router.head("/{call_key}/recording", response_class=Response,
             responses=RECORDING_RESPONSES)
async def recording_head(
    call_key: str, request: Request, state: State, download: Download = False,
    tid: TokenId = None, exp: Expiry = None, sig: Signature = None,
) -> Response:
    """The headers a GET would send (size, type, ETag, Content-Range): no audio leaves, so
    nothing is audited."""
    planned = plan(call_key, request, state, download, tid, exp, sig)
    if isinstance(planned, Response):
        return planned
    return Response(status_code=planned.code, headers=planned.headers)


@router.get(
    "/{call_key}/recording",
    response_class=Response,
    responses={**RECORDING_RESPONSES, 503: {
        "model": Problem, "description": "Audit or object store unavailable: no audio"}},
)
async def recording(
    call_key: str, request: Request, state: State, download: Download = False,
    tid: TokenId = None, exp: Expiry = None, sig: Signature = None,
) -> Response:
    """The recording, streamed from the object store; Range/If-Range give 206 or 416. The
    access is written to rec.audit.v1 and acknowledged before the first byte."""
    return await serve(call_key, request, state, download, tid, exp, sig)


async def serve(call_key: str, request: Request, state: AppState, download: bool,
                tid: str | None, exp: int | None, sig: str | None) -> Response:
    """The GET above, also called by ``playback_path`` with the parameters it parsed."""
    planned = plan(call_key, request, state, download, tid, exp, sig)
    if isinstance(planned, Response):
        return planned
    rec, part = planned.rec, planned.part
    event = audit.access_event(
        state.settings.api_replica_id, planned.who,
        AccessAction.DOWNLOAD if download else AccessAction.PLAY, call_key,
        client_addr=client_addr(request), user_agent=request.headers.get("user-agent"),
        object_key=rec["object_key"], version_id=rec["version_id"],
        byte_range=(part.start, part.end))
    ident = Identity(rec["bucket"], rec["object_key"], rec["version_id"], rec["sha256"],
                     rec["size_bytes"])
    cached = state.reader.cached(ident, part.start, part.length)
    if cached is not None:  # the verified copy: only the acknowledgement to wait for
        await audit.record(state.publisher, event)
        return Response(cached, status_code=planned.code, headers=planned.headers)

    def open_large() -> Any:
        """A long range (a whole recording, a download) streams through the SDK in a thread."""
        return state.reader.open_range(rec["bucket"], rec["object_key"], rec["version_id"],
                                       part.start, part.length)

    # The short range a seeking player asks for is read on the event loop, while Kafka
    # acknowledges the access: the wait is the longer of the two, not their sum. Nothing is
    # sent before both are done, and a failed audit sends nothing (no audit, no audio).
    read = (state.reader.ranged.read(rec["bucket"], rec["object_key"], rec["version_id"],
                                     part.start, part.length)
            if part.length <= WHOLE_BELOW else asyncio.to_thread(open_large))
    audited, body = await asyncio.gather(audit.record(state.publisher, event), read,
                                         return_exceptions=True)
    if isinstance(audited, BaseException) or isinstance(body, BaseException):
        if not isinstance(body, bytes | BaseException):
            body.close()
            body.release_conn()
        raise audited if isinstance(audited, BaseException) else body
    state.reader.fill_later(ident)  # this player's next ranges, and other listeners'
    if isinstance(body, bytes):
        return Response(body, status_code=planned.code, headers=planned.headers)
    return StreamingResponse(state.reader.stream(body), status_code=planned.code,
                             headers=planned.headers)


@router.get("/{call_key}/verify", response_model=VerifyPublic,
            responses={**AUTH_ERRORS, **NOT_FOUND,
                       503: {"model": Problem, "description": "Audit or store unavailable"}})
async def verify_recording(call_key: str, request: Request, state: State,
                           who: Auditor) -> VerifyPublic:
    """Re-hash the stored object and check it against RecordingArchived and the signed daily
    manifest; each check says whether it passed and why."""
    rec = await asyncio.to_thread(lambda: queries.get_recording(state.db(), call_key))
    if rec is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no recording of call {call_key}")
    reader, bucket, key = state.reader, rec["bucket"], rec["object_key"]

    def run() -> tuple[str | None, list[verify.Check]]:
        try:
            stored, _ = reader.sha256(bucket, key, rec["version_id"])
        except MissingObject:
            stored = None
        day = verify.day_of(key)
        manifest = signature = None
        if day is not None:
            manifest = reader.read(bucket, manifest_key(day))
            signature = reader.read(bucket, manifest_key(day) + ".sig")
        configured = state.settings.api_manifest_public_key
        public = configured.read_bytes() if configured else reader.read(bucket,
                                                                         PUBLIC_KEY_OBJECT)
        checks = [verify.hash_check(rec["sha256"], stored),
                  *verify.manifest_checks(key, rec["sha256"], manifest, signature, public)]
        return stored, checks

    stored, checks = await asyncio.to_thread(run)
    ok = all(c.ok is not False for c in checks)
    failed = [c.name for c in checks if c.ok is False]
    await audit.record(state.publisher, audit.access_event(
        state.settings.api_replica_id, who, AccessAction.VERIFY, call_key,
        client_addr=client_addr(request), user_agent=request.headers.get("user-agent"),
        object_key=key, version_id=rec["version_id"],
        outcome="ok" if ok else "failed: " + ",".join(failed)))
    return VerifyPublic(call_key=call_key, ok=ok, sha256_archived=rec["sha256"],
                        sha256_stored=stored,
                        checks=[CheckPublic(name=c.name, ok=c.ok, detail=c.detail)
                                for c in checks])
