"""One site (bucket, token file) and one replica for the API tests, seeded with calls of a
cluster id of its own: other tests' calls share the broker, so every query filters by it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from minio import Minio

from callrec.api.tokens import Role
from callrec.avro.events import AbnormalReason, CallRecord, CallStatus, RecordingArchived
from callrec.infra.kafka import KafkaBroker
from callrec.infra.s3 import S3Server
from tests.api.harness import (
    Replica,
    Site,
    archive,
    call_record,
    get_json,
    make_wav,
    wait_for,
)
from tests.conftest import run_sync
from tests.sinks.harness import publish


@dataclass
class Seeded:
    cluster: str
    now: datetime
    calls: dict[str, CallRecord]
    recordings: dict[str, RecordingArchived]
    wavs: dict[str, bytes]

    def key(self, n: int) -> str:
        return f"{self.cluster}:{n}"


@pytest.fixture(scope="package")
def site(kafka: KafkaBroker, s3: S3Server, minio_client: Minio,
         tmp_path_factory: pytest.TempPathFactory) -> Site:
    bucket = f"api-{uuid.uuid4().hex[:10]}"
    minio_client.make_bucket(bucket)
    return Site(kafka, s3, minio_client, bucket, tmp_path_factory.mktemp("api-site"))


@pytest.fixture(scope="package")
def seeded(site: Site) -> Seeded:
    """Six calls covering the statuses, a partial recording, re-archiving and stale versions."""
    cluster = f"T{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC).replace(microsecond=0)
    s = Seeded(cluster, now, {}, {}, {})
    specs = [
        (1001, "1001", "2001", timedelta(hours=1), CallStatus.COMPLETED, None, True),
        (1002, "1002", "5550100", timedelta(hours=2), CallStatus.ABNORMAL,
         AbnormalReason.RECORDER_LOST, True),
        (1003, "1003", "2003", timedelta(minutes=1), CallStatus.ACTIVE, None, False),
        (1004, "3004", "1001", timedelta(hours=3), CallStatus.COMPLETED, None, False),
        (1005, "1005", "2005", timedelta(hours=4), CallStatus.COMPLETED, None, True),
    ]
    events: list[CallRecord | RecordingArchived] = []
    for n, near, far, ago, status, reason, recorded in specs:
        key = s.key(n)
        seconds = {1001: 40.0, 1002: 2.5}.get(n, 4.0)
        call = call_record(key, near=near, far=far, started=now - ago, status=status,
                           abnormal=reason, recorder="rec-2" if n == 1002 else "rec-1",
                           seconds=seconds)
        s.calls[key] = call
        events.append(call)
        if recorded:
            s.wavs[key] = make_wav(seconds, seed=n)
            s.recordings[key] = archive(site.minio, site.bucket, call, s.wavs[key],
                                        partial=n == 1002)
            events.append(s.recordings[key])
    # A stale snapshot and a stale recording arrive after the newer ones (a compacted topic
    # replayed): the newest must stay.
    stale = s.calls[s.key(1005)].model_copy(update={"version": 1,
                                                    "status": CallStatus.ACTIVE})
    old_rec = s.recordings[s.key(1005)].model_copy(update={"call_version": 1,
                                                           "sha256": "0" * 64})
    events += [stale, old_rec]
    run_sync(publish(site.kafka.bootstrap, events))
    return s


@pytest.fixture(scope="package")
def tokens(site: Site) -> dict[Role, str]:
    return {role: site.token(role) for role in Role}


@pytest.fixture(scope="package")
def replica(site: Site, seeded: Seeded, tokens: dict[Role, str]) -> Iterator[Replica]:
    r = site.replica("api-a")
    r.start()
    wait_for(lambda: get_json(f"{r.url}/api/v1/calls?cluster={seeded.cluster}",
                              tokens[Role.viewer])[1].get("count") == 5, 30, "seeded calls")
    try:
        yield r
    finally:
        r.stop()
