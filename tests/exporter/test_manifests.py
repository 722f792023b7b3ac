"""The newest day with a signed manifest: the rule (pure), then read by the exporter from the
real S3 server."""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from minio import Minio

from callrec.exporter.loop import serve
from callrec.exporter.manifests import day_start_s, last_signed_day, signature_key
from callrec.exporter.settings import ExporterSettings
from callrec.infra.kafka import KafkaBroker
from callrec.infra.procs import free_port
from callrec.infra.s3 import S3Server
from tests.exporter.harness import scrape, value, wait_until

TODAY = date(2026, 12, 1)


@pytest.mark.parametrize(("signed_days_ago", "newest"), [
    ((1, 2, 3), 1), ((2, 3), 2), ((0,), None), ((8,), None), ((), None),
])
def test_the_newest_signed_day_before_today_within_a_week(
    signed_days_ago: tuple[int, ...], newest: int | None
) -> None:
    signed = {signature_key(TODAY - timedelta(days=n)) for n in signed_days_ago}
    found = last_signed_day(signed.__contains__, TODAY)
    assert found == (None if newest is None else TODAY - timedelta(days=newest))


def test_signature_keys_are_the_mixers() -> None:
    assert signature_key(TODAY) == "manifests/2026/12/01.sha256.sig"


@pytest.mark.asyncio(loop_scope="session")
async def test_the_exporter_reports_yesterdays_signed_manifest_from_s3(
    kafka: KafkaBroker, s3: S3Server, minio_client: Minio
) -> None:
    bucket = f"manifests-{uuid.uuid4().hex[:10]}"
    minio_client.make_bucket(bucket)
    settings = ExporterSettings(
        kafka_bootstrap=kafka.bootstrap, exporter_port=free_port(), exporter_read_audio=False,
        s3_endpoint=s3.endpoint, s3_access_key=s3.access_key, s3_secret_key=s3.secret_key,
        s3_bucket=bucket, exporter_manifest_check_s=0.5,
    )
    url = f"http://127.0.0.1:{settings.exporter_port}/metrics"
    name = "callrec_manifest_last_signed_day_timestamp_seconds"
    stopping = asyncio.Event()
    task = asyncio.create_task(serve(settings, stopping))
    try:
        await wait_until(lambda: value(scrape(url), name) == 0, 30, "no manifest signed yet")
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        signature = bytes(64)
        minio_client.put_object(bucket, signature_key(yesterday), io.BytesIO(signature),
                                len(signature))
        await wait_until(lambda: value(scrape(url), name) == day_start_s(yesterday), 30,
                         "yesterday's signature seen")
    finally:
        stopping.set()
        await asyncio.wait_for(task, 30)
