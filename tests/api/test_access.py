"""Every auth case, HTTP Range on the recording, signed playback URLs, and the audit event
that Kafka acknowledges before the first audio byte."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from callrec.api.tokens import Role
from callrec.avro import codec
from callrec.avro.events import AccessAudited
from callrec.avro.topics import AUDIT
from tests.api.conftest import Seeded
from tests.api.harness import Replica, Site
from tests.conftest import run_sync


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def rec_url(replica: Replica, key: str) -> str:
    return f"{replica.url}/api/v1/calls/{quote(key, safe='')}/recording"


@pytest.mark.parametrize("header", [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer nope",
                                    "Bearer crk_deadbeef_notthesecret"])
def test_no_or_wrong_token_is_401_with_challenge(replica: Replica, seeded: Seeded,
                                                 header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for path in ("/api/v1/calls", f"/api/v1/calls/{quote(seeded.key(1001))}", "/api/v1/audit",
                 "/api/v1/live/calls", "/api/v1/me"):
        r = httpx.get(replica.url + path, headers=headers)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"].startswith('Bearer realm="callrec"')
    r = httpx.get(rec_url(replica, seeded.key(1001)), headers=headers)
    assert r.status_code == 401 and not r.content.startswith(b"RIFF")


def test_revoked_token_is_401_at_once(replica: Replica, site: Site) -> None:
    token = site.token(Role.viewer)
    assert httpx.get(f"{replica.url}/api/v1/me", headers=auth(token)).status_code == 200
    site.tokens.revoke(token.split("_")[1])
    assert httpx.get(f"{replica.url}/api/v1/me", headers=auth(token)).status_code == 401


def test_roles(replica: Replica, seeded: Seeded, tokens: dict[Role, str]) -> None:
    key = quote(seeded.key(1001), safe="")
    viewer, auditor = auth(tokens[Role.viewer]), auth(tokens[Role.auditor])
    for path in ("/api/v1/audit", f"/api/v1/calls/{key}/verify",
                 f"/api/v1/calls/{key}/recording?download=1"):
        r = httpx.get(replica.url + path, headers=viewer)
        assert r.status_code == 403, path
        assert "auditor" in r.json()["detail"]
    assert httpx.get(f"{replica.url}/api/v1/audit", headers=auditor).status_code == 200
    assert httpx.get(f"{replica.url}/api/v1/audit",
                     headers=auth(tokens[Role.admin])).status_code == 200
    me = httpx.get(f"{replica.url}/api/v1/me", headers=viewer).json()
    assert me["role"] == "viewer"


def test_whole_recording_and_headers(replica: Replica, seeded: Seeded,
                                     tokens: dict[Role, str]) -> None:
    key = seeded.key(1001)
    r = httpx.get(rec_url(replica, key), headers=auth(tokens[Role.viewer]))
    assert r.status_code == 200
    assert r.content == seeded.wavs[key]
    assert r.headers["content-type"] == "audio/wav"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["etag"] == f'"{seeded.recordings[key].sha256}"'
    assert r.headers["content-disposition"].startswith("inline")
    assert "content-range" not in r.headers
    assert "default-src 'none'" in r.headers["content-security-policy"]


def ranged(replica: Replica, key: str, token: str, **headers: str) -> httpx.Response:
    return httpx.get(rec_url(replica, key), headers={**auth(token), **headers})


@pytest.mark.parametrize(("header", "start", "end"), [
    ("bytes=0-99", 0, 99),
    ("bytes=100-", 100, None),
    ("bytes=-50", None, None),
    ("bytes=10-10", 10, 10),
    ("bytes=0-999999999", 0, None),
])
def test_ranges(replica: Replica, seeded: Seeded, tokens: dict[Role, str],
                header: str, start: int | None, end: int | None) -> None:
    key = seeded.key(1001)
    wav = seeded.wavs[key]
    size = len(wav)
    if start is None:
        start = size - 50
    last = size - 1 if end is None else end
    r = ranged(replica, key, tokens[Role.viewer], Range=header)
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes {start}-{last}/{size}"
    assert r.content == wav[start:last + 1]
    assert int(r.headers["content-length"]) == last - start + 1


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=-0"])
def test_unsatisfiable_range_is_416(replica: Replica, seeded: Seeded,
                                    tokens: dict[Role, str], header: str) -> None:
    key = seeded.key(1001)
    r = ranged(replica, key, tokens[Role.viewer], Range=header)
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(seeded.wavs[key])}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-9", "items=0-5", "bytes=9-1", "garbage"])
def test_ranges_we_ignore_get_the_whole_object(replica: Replica, seeded: Seeded,
                                               tokens: dict[Role, str], header: str) -> None:
    key = seeded.key(1001)
    r = ranged(replica, key, tokens[Role.viewer], Range=header)
    assert r.status_code == 200 and r.content == seeded.wavs[key]


def test_if_range(replica: Replica, seeded: Seeded, tokens: dict[Role, str]) -> None:
    key = seeded.key(1001)
    etag = f'"{seeded.recordings[key].sha256}"'
    same = ranged(replica, key, tokens[Role.viewer], Range="bytes=0-9", **{"If-Range": etag})
    assert same.status_code == 206 and len(same.content) == 10
    stale = ranged(replica, key, tokens[Role.viewer], Range="bytes=0-9",
                   **{"If-Range": '"0000"'})
    assert stale.status_code == 200 and stale.content == seeded.wavs[key]


def test_head_gives_the_get_headers_and_no_audio_nor_audit(
        replica: Replica, seeded: Seeded, site: Site, tokens: dict[Role, str]) -> None:
    key = seeded.key(1001)
    size = len(seeded.wavs[key])
    before = run_sync(audit_ends(site))
    head = httpx.head(rec_url(replica, key),
                      headers={**auth(tokens[Role.viewer]), "Range": "bytes=100-199",
                               "User-Agent": "head-probe/1"})
    get = ranged(replica, key, tokens[Role.viewer], Range="bytes=100-199")
    assert head.status_code == get.status_code == 206 and head.content == b""
    for name in ("content-length", "content-range", "content-type", "etag", "accept-ranges"):
        assert head.headers[name] == get.headers[name], name
    whole = httpx.head(rec_url(replica, key), headers=auth(tokens[Role.viewer]))
    assert whole.status_code == 200 and int(whole.headers["content-length"]) == size
    assert httpx.head(rec_url(replica, key)).status_code == 401
    assert httpx.head(rec_url(replica, key), headers={
        **auth(tokens[Role.viewer]), "Range": f"bytes={size}-"}).status_code == 416
    events = run_sync(audit_events_since(site, before))
    assert not [e for e in events if e.user_agent == "head-probe/1"]


async def a_burst_of_ranges(url: str, token: str, spans: list[tuple[int, int]]) -> list[bytes]:
    limits = httpx.Limits(max_connections=len(spans))
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def one(start: int, end: int) -> bytes:
            r = await client.get(url, headers={**auth(token), "Range": f"bytes={start}-{end}"})
            assert r.status_code == 206, r.text
            return r.content

        return list(await asyncio.gather(*(one(a, b) for a, b in spans)))


def test_a_burst_of_seeks_gets_each_its_own_bytes(replica: Replica, seeded: Seeded,
                                                 tokens: dict[Role, str]) -> None:
    """Short ranges share pooled S3 connections read on the event loop: 60 at the same
    instant, then 60 more on the kept-alive connections, each get exactly their bytes."""
    key = seeded.key(1001)
    wav = seeded.wavs[key]
    spans = [(n * 97 % (len(wav) - 5000), n * 97 % (len(wav) - 5000) + 999 + n)
             for n in range(60)]
    for _ in range(2):
        bodies = run_sync(a_burst_of_ranges(rec_url(replica, key), tokens[Role.viewer], spans))
        assert bodies == [wav[a:b + 1] for a, b in spans]


def playback(replica: Replica, key: str, token: str) -> Any:
    r = httpx.post(f"{replica.url}/api/v1/calls/{quote(key, safe='')}/playback",
                   headers=auth(token))
    assert r.status_code == 200
    return r.json()


def test_signed_urls(replica: Replica, seeded: Seeded, tokens: dict[Role, str]) -> None:
    key, other = seeded.key(1001), seeded.key(1002)
    urls = playback(replica, key, tokens[Role.viewer])
    assert urls["download_url"] is None  # viewers may not download
    assert tokens[Role.viewer] not in urls["play_url"]
    ok = httpx.get(replica.url + urls["play_url"], headers={"Range": "bytes=0-3"})
    assert ok.status_code == 206 and ok.content == b"RIFF"
    # the same signature for another call, or as a download, is refused
    moved = urls["play_url"].replace(quote(key, safe=""), quote(other, safe=""))
    assert httpx.get(replica.url + moved).status_code == 401
    assert httpx.get(replica.url + urls["play_url"] + "&download=1").status_code == 401
    tampered = urls["play_url"].replace("exp=", "exp=1")
    assert httpx.get(replica.url + tampered).status_code == 401
    auditor_urls = playback(replica, key, tokens[Role.auditor])
    d = httpx.get(replica.url + auditor_urls["download_url"])
    assert d.status_code == 200 and d.headers["content-disposition"].startswith("attachment")
    assert hashlib.sha256(d.content).hexdigest() == seeded.recordings[key].sha256


def test_signed_url_dies_with_its_token(replica: Replica, seeded: Seeded, site: Site) -> None:
    token = site.token(Role.viewer)
    urls = playback(replica, seeded.key(1001), token)
    site.tokens.revoke(token.split("_")[1])
    assert httpx.get(replica.url + urls["play_url"]).status_code == 401


async def audit_events_since(site: Site, starts: dict[TopicPartition, int]) -> list[AccessAudited]:
    consumer = AIOKafkaConsumer(bootstrap_servers=site.kafka.bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = list(starts)
        consumer.assign(tps)
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        ends = await consumer.end_offsets(tps)
        found: list[AccessAudited] = []
        pending = set(tps)
        while pending:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [e for r in records
                          if isinstance(e := codec.decode(r.value or b""), AccessAudited)]
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        return found
    finally:
        await consumer.stop()


async def audit_ends(site: Site) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=site.kafka.bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(AUDIT.name, p) for p in
               consumer.partitions_for_topic(AUDIT.name) or range(6)]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


def test_audit_is_in_kafka_before_the_first_byte(replica: Replica, seeded: Seeded,
                                                 site: Site, tokens: dict[Role, str]) -> None:
    key = seeded.key(1002)
    before = run_sync(audit_ends(site))
    with httpx.stream("GET", rec_url(replica, key), headers={
            **auth(tokens[Role.viewer]), "Range": "bytes=44-1043", "User-Agent": "probe/1"}) as r:
        assert r.status_code == 206
        # Headers are here, no body byte read yet: the access must already be in the log.
        events = run_sync(audit_events_since(site, before))
        body = r.read()
    assert len(body) == 1000
    [event] = [e for e in events if e.call_key == key and e.user_agent == "probe/1"]
    assert (event.action.value, event.role, event.range_start, event.range_end) == (
        "PLAY", "viewer", 44, 1043)
    assert event.client_addr and event.client_addr.startswith("127.0.0.1:")
    assert event.object_key == seeded.recordings[key].object_key
    # ... and the read model shows it to auditors
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = httpx.get(f"{replica.url}/api/v1/audit?call_key={quote(key)}",
                        headers=auth(tokens[Role.auditor])).json()
        if any(e["event_id"] == str(event.event_id) for e in log["data"]):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the audit event never reached the read model")


def test_verify_reports_each_check(replica: Replica, seeded: Seeded, site: Site,
                                   tokens: dict[Role, str]) -> None:
    key = seeded.key(1002)
    r = httpx.get(f"{replica.url}/api/v1/calls/{quote(key, safe='')}/verify",
                  headers=auth(tokens[Role.auditor]))
    body = r.json()
    assert r.status_code == 200 and body["ok"] is True
    assert body["sha256_stored"] == seeded.recordings[key].sha256
    assert [(c["name"], c["ok"]) for c in body["checks"]] == [
        ("object_sha256", True), ("manifest_signature", None), ("manifest_entry", None)]


def test_admins_manage_tokens_over_http(replica: Replica, tokens: dict[Role, str]) -> None:
    base = f"{replica.url}/api/v1/tokens"
    for role in (Role.viewer, Role.auditor):
        assert httpx.get(base, headers=auth(tokens[role])).status_code == 403
    admin = auth(tokens[Role.admin])
    made = httpx.post(base, headers=admin, json={"name": "erin", "role": "auditor"})
    assert made.status_code == 201
    body = made.json()
    me = httpx.get(f"{replica.url}/api/v1/me", headers=auth(body["token"])).json()
    assert (me["name"], me["role"]) == ("erin", "auditor")
    listed = httpx.get(base, headers=admin).json()
    assert body["id"] in [t["id"] for t in listed]
    assert all("token" not in t for t in listed)
    assert httpx.delete(f"{base}/{body['id']}", headers=admin).json()["revoked_at"]
    assert httpx.get(f"{replica.url}/api/v1/me", headers=auth(body["token"])).status_code == 401
    assert httpx.delete(f"{base}/nope", headers=admin).status_code == 404
    own = tokens[Role.admin].split("_")[1]
    assert httpx.delete(f"{base}/{own}", headers=admin).status_code == 409
    bad = httpx.post(base, headers=admin, json={"name": "", "role": "root"})
    assert bad.status_code == 422
    assert {d["loc"][-1] for d in bad.json()["detail"]} == {"name", "role"}
