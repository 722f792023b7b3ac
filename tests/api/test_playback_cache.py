"""The recording cache against the real S3 server, Kafka and read model: cached bytes are the
archived recording's, every cached access is still audited (and refused without an
acknowledgement), bytes that do not hash to the archived sha256 are never cached, and a call
re-archived as a new object is served its new bytes.

The app runs in-process (as in test_no_audit_no_audio) so the test can hold its cache and its
publisher; requests still go through the real ASGI stack, the package replica's read model file
and the real S3 server.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx

from callrec.api.app import create_app
from callrec.api.deps import AppState
from callrec.api.live import LiveHub
from callrec.api.objects import ObjectReader
from callrec.api.readmodel import Progress
from callrec.api.recording_cache import Identity, RecordingCache
from callrec.api.settings import ApiSettings
from callrec.api.tokens import Role
from callrec.avro.events import CallStatus
from callrec.eventlog import EventPublisher
from tests.api.conftest import Seeded
from tests.api.harness import Replica, Site, archive, call_record, get_json, make_wav, wait_for
from tests.api.test_access import audit_ends, audit_events_since
from tests.sinks.harness import publish


def state_of(site: Site, replica: Replica, reader: ObjectReader,
             publisher: EventPublisher) -> AppState:
    settings = ApiSettings(s3_access_key=site.s3.access_key, s3_secret_key=site.s3.secret_key,
                           kafka_bootstrap=site.kafka.bootstrap)
    return AppState(settings=settings, tokens=site.tokens, signing_key=b"k" * 32,
                    reader=reader, publisher=publisher, progress=Progress(), hub=LiveHub(),
                    db_path=Path(replica.env["CALLREC_API_DATA_DIR"]) / "readmodel.sqlite3")


@contextlib.asynccontextmanager
async def client_of(state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


@contextlib.asynccontextmanager
async def publisher_of(site: Site) -> AsyncIterator[EventPublisher]:
    publisher = EventPublisher(site.kafka.bootstrap, f"test-cache-{uuid.uuid4().hex[:6]}")
    await publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()


def cached_reader(site: Site) -> ObjectReader:
    return ObjectReader(site.minio, 8, RecordingCache(64 * 2**20, 32 * 2**20, 600))


def path_of(key: str) -> str:
    return f"/api/v1/calls/{quote(key, safe='')}/recording"


async def test_cached_bytes_are_the_recording_and_every_access_is_audited(
    site: Site, seeded: Seeded, replica: Replica, tokens: dict[Role, str]
) -> None:
    key = seeded.key(1001)
    wav = seeded.wavs[key]
    agent = f"cache-probe/{uuid.uuid4().hex[:6]}"
    viewer = {"Authorization": f"Bearer {tokens[Role.viewer]}", "User-Agent": agent}
    reader = cached_reader(site)
    before = await audit_ends(site)
    spans = [(44, 1043), (5000, 70535), (len(wav) - 10, len(wav) - 1)]
    async with publisher_of(site) as publisher, client_of(
            state_of(site, replica, reader, publisher)) as client:
        first = await client.get(path_of(key), headers={**viewer, "Range": "bytes=0-99"})
        assert first.status_code == 206 and first.content == wav[:100]
        assert reader.cache.stats.hits == 0
        await reader.drain_fills()
        assert (reader.cache.stats.entries, reader.cache.stats.bytes) == (1, len(wav))
        for start, end in spans:
            r = await client.get(path_of(key), headers={**viewer,
                                                        "Range": f"bytes={start}-{end}"})
            assert r.status_code == 206
            assert r.headers["content-range"] == f"bytes {start}-{end}/{len(wav)}"
            assert r.content == wav[start:end + 1]
        whole = await client.get(path_of(key), headers=viewer)
        assert whole.status_code == 200 and whole.content == wav
        assert reader.cache.stats.hits == len(spans) + 1
        # a revoked token gets nothing, cached or not
        token = site.token(Role.viewer)
        site.tokens.revoke(token.split("_")[1])
        refused = await client.get(path_of(key), headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401 and b"RIFF" not in refused.content
    events = [e for e in await audit_events_since(site, before) if e.user_agent == agent]
    assert sorted((e.range_start, e.range_end) for e in events) == sorted(
        [(0, 99), *spans, (0, len(wav) - 1)])


async def test_no_acknowledgement_no_cached_audio(
    site: Site, seeded: Seeded, replica: Replica, tokens: dict[Role, str]
) -> None:
    key = seeded.key(1001)
    reader = cached_reader(site)
    viewer = {"Authorization": f"Bearer {tokens[Role.viewer]}"}
    async with publisher_of(site) as publisher, client_of(
            state_of(site, replica, reader, publisher)) as client:
        assert (await client.get(path_of(key), headers=viewer)).status_code == 200
        await reader.drain_fills()
    assert reader.cache.stats.entries == 1
    closed = EventPublisher(site.kafka.bootstrap, "test-cache-closed")
    await closed.start()
    await closed.stop()  # Kafka will not acknowledge anything from it
    async with client_of(state_of(site, replica, reader, closed)) as client:
        r = await client.get(path_of(key), headers={**viewer, "Range": "bytes=0-4095"})
    assert r.status_code == 503 and b"RIFF" not in r.content
    assert reader.cache.stats.hits == 1  # it was there, and still not sent


async def test_bytes_unlike_the_archived_recording_are_never_cached(
    site: Site, seeded: Seeded
) -> None:
    rec = seeded.recordings[seeded.key(1005)]
    reader = cached_reader(site)
    right = Identity(rec.bucket, rec.object_key, rec.version_id, rec.sha256, rec.size_bytes)
    for wrong in (replace(right, sha256="0" * 64), replace(right, size=right.size - 1)):
        reader.fill_later(wrong)
        await reader.drain_fills()
        assert wrong not in reader.cache
    assert reader.cache.stats.refused == 2 and reader.cache.stats.entries == 0
    reader.fill_later(right)
    await reader.drain_fills()
    assert reader.cache.get(right) == seeded.wavs[seeded.key(1005)]


async def test_a_rearchived_call_is_served_its_new_recording(
    site: Site, replica: Replica, tokens: dict[Role, str]
) -> None:
    key = f"C{uuid.uuid4().hex[:6]}:1"
    call = call_record(key, near="1001", far="2001",
                       started=datetime.now(UTC) - timedelta(minutes=5),
                       status=CallStatus.COMPLETED, seconds=3.0)
    old_wav, new_wav = make_wav(3.0, seed=1), make_wav(3.0, seed=2)
    old = archive(site.minio, site.bucket, call, old_wav)
    await publish(site.kafka.bootstrap, [call, old])
    viewer = {"Authorization": f"Bearer {tokens[Role.viewer]}"}

    def sha_in_read_model() -> object:
        detail = get_json(f"{replica.url}/api/v1/calls/{quote(key, safe='')}",
                          tokens[Role.viewer])[1]
        recording = detail.get("recording")
        return recording.get("sha256") if isinstance(recording, dict) else None

    wait_for(lambda: sha_in_read_model() == old.sha256, 30, "the first recording")
    reader = cached_reader(site)
    async with publisher_of(site) as publisher, client_of(
            state_of(site, replica, reader, publisher)) as client:
        assert (await client.get(path_of(key), headers=viewer)).content == old_wav
        await reader.drain_fills()
        assert reader.cache.stats.entries == 1
        newer = call.model_copy(update={"version": call.version + 1})
        new = archive(site.minio, site.bucket, newer, new_wav)
        await publish(site.kafka.bootstrap, [newer, new])
        wait_for(lambda: sha_in_read_model() == new.sha256, 30, "the re-archived recording")
        r = await client.get(path_of(key), headers={**viewer, "Range": "bytes=0-"})
        assert r.content == new_wav and r.headers["etag"] == f'"{new.sha256}"'
