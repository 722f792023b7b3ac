"""GET /calls (search), /calls/{key} (detail), its playback URLs and waveform peaks."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote, urlencode

import av
import numpy as np
from fastapi import APIRouter, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError

from callrec.api import peaks, present, queries, signing
from callrec.api.deps import State, Viewer
from callrec.api.errors import RecordingUnavailable
from callrec.api.rows import CallFilter, Cursor
from callrec.api.schemas import (
    CallPublic,
    CallsPublic,
    PeaksPublic,
    PlaybackPublic,
    Problem,
)
from callrec.api.tokens import Role
from callrec.avro.events import AbnormalReason, CallStatus

router = APIRouter(prefix="/calls", tags=["calls"])
AUTH_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "No, malformed, unknown or revoked token"},
    403: {"model": Problem, "description": "The token's role is not enough"},
}
NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": Problem, "description": "No such call (or no recording of it)"},
}
Text = Annotated[str | None, Query(min_length=1, max_length=64)]


def invalid(field: str, why: str, value: object) -> RequestValidationError:
    """A 422 in FastAPI's own shape, naming the field and why."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", field), "msg": why, "input": value}]
    )


def utc(field: str, moment: datetime | None) -> datetime | None:
    """Naive times are taken as UTC; times SQLite cannot order are refused by name."""
    if moment is None:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        moment.timestamp()
        moment.astimezone(UTC)
    except (OverflowError, ValueError) as e:
        raise invalid(field, f"time out of range: {e}", str(moment)) from e
    return moment


@router.get("", response_model=CallsPublic, responses=AUTH_ERRORS)
def search_calls(
    state: State, who: Viewer,
    started_from: Annotated[datetime | None, Query(
        description="Calls started at or after (ISO 8601; UTC if no offset)")] = None,
    started_to: Annotated[datetime | None, Query(description="Calls started before")] = None,
    party: Annotated[str | None, Query(
        min_length=1, max_length=64,
        description="Number prefix of either party (near or far end)")] = None,
    device: Annotated[str | None, Query(min_length=1, max_length=64,
                                        description="Device name of either party")] = None,
    cluster: Text = None,
    call_status: Annotated[CallStatus | None, Query(alias="status")] = None,
    abnormal_reason: AbnormalReason | None = None,
    recorder: Text = None,
    has_recording: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> CallsPublic:
    """Search calls, newest first, a page at a time; `count` is the total across pages."""
    start, end = utc("started_from", started_from), utc("started_to", started_to)
    if start and end and start > end:
        raise invalid("started_to", "must not be before started_from", str(end))
    after = None
    if cursor is not None:
        try:
            after = Cursor.decode(cursor)
        except ValueError as e:
            raise invalid("cursor", str(e), cursor) from e
    filters = CallFilter(
        started_from=start, started_to=end, party=party, device=device, cluster=cluster,
        status=call_status.value if call_status else None,
        abnormal_reason=abnormal_reason.value if abnormal_reason else None,
        recorder=recorder, has_recording=has_recording,
    )
    conn = state.db()
    rows = queries.search_calls(conn, filters, limit + 1, after)
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = Cursor(last["started_at_us"], last["call_key"]).encode()
    return CallsPublic(data=[present.summary(r) for r in page],
                       count=queries.count_calls(conn, filters), next_cursor=next_cursor)


@router.get("/{call_key}", response_model=CallPublic, responses={**AUTH_ERRORS, **NOT_FOUND})
def get_call(call_key: str, state: State, who: Viewer) -> CallPublic:
    """One call: parties, legs, segments and its recording (with gaps)."""
    conn = state.db()
    row = queries.get_call(conn, call_key)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no call {call_key}")
    return present.call(row, queries.get_recording(conn, call_key))


@router.post("/{call_key}/playback", response_model=PlaybackPublic,
             responses={**AUTH_ERRORS, **NOT_FOUND})
def playback_urls(call_key: str, state: State, who: Viewer) -> PlaybackPublic:
    """Signed URLs (minutes long) for `<audio src>` and a download link: a browser cannot send
    a bearer header there, and a long-lived token never goes into a URL."""
    if queries.get_recording(state.db(), call_key) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no recording of call {call_key}")
    expires = int(time.time()) + state.settings.api_playback_ttl_s

    def url(purpose: str) -> str:
        sig = signing.sign(state.signing_key, call_key, who.token_id, purpose, expires)
        query = {"tid": who.token_id, "exp": expires, "sig": sig}
        if purpose == "download":
            query["download"] = 1
        return f"/api/v1/calls/{quote(call_key, safe='')}/recording?{urlencode(query)}"

    return PlaybackPublic(
        play_url=url("play"),
        download_url=url("download") if who.role >= Role.auditor else None,
        expires_at=datetime.fromtimestamp(expires, UTC),
    )


@router.get("/{call_key}/peaks", response_model=PeaksPublic,
            responses={**AUTH_ERRORS, **NOT_FOUND})
async def waveform(
    call_key: str, state: State, who: Viewer,
    buckets: Annotated[int, Query(ge=16, le=4000)] = 800,
) -> PeaksPublic:
    """Waveform peaks, computed from the stored recording once and cached by its sha256."""
    rec = await asyncio.to_thread(lambda: queries.get_recording(state.db(), call_key))
    if rec is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no recording of call {call_key}")

    def load() -> bytes:
        conn = state.db()
        cached = queries.cached_peaks(conn, rec["sha256"], buckets)
        if cached is not None:
            return cached
        try:
            with state.reader.whole(rec["bucket"], rec["object_key"],
                                    rec["version_id"]) as body:
                computed = peaks.stream_peaks(body, buckets, rec["duration_ms"]).tobytes()
        except av.FFmpegError as e:
            raise RecordingUnavailable(f"the stored recording does not decode: {e}") from e
        queries.store_peaks(conn, rec["sha256"], buckets, computed)
        return computed

    raw = await asyncio.to_thread(load)
    grid = np.frombuffer(raw, dtype=np.uint8).reshape(-1, buckets)
    return PeaksPublic(buckets=buckets, channels=grid.shape[0],
                       duration_ms=rec["duration_ms"], peaks=grid.tolist())
