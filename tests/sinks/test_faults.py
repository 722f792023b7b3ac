"""Faults: a mixer killed mid-call, the object store down during an upload. Nothing is lost,
nothing is stored twice."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from minio import Minio

from callrec.avro.events import CallStatus
from callrec.avro.topics import AUDIO
from callrec.infra.kafka import KafkaBroker
from callrec.infra.s3 import S3Server
from tests.sinks.factory import payload_pcm, simple_call
from tests.sinks.harness import (
    archived,
    committed,
    mixer_env,
    new_cluster,
    publish,
    running,
    settings_from,
    start_mixer,
    versions,
    wav_channels,
)

pytestmark = pytest.mark.slow


def read_status(path: Path) -> dict[str, object]:
    status: dict[str, object] = json.loads(path.read_text())
    return status


async def wait_health(path: Path, ready: str, within: float = 30.0) -> dict[str, object]:
    """Wait until the worker's health file satisfies ``ready`` (a key that must be truthy)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            status = read_status(path)
            if status.get("state") in ("running", "degraded") and status.get(ready):
                return status
        except (OSError, ValueError):
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} never showed {ready}")


async def test_kill_9_mid_call_another_worker_finishes_it(
    kafka: KafkaBroker, s3: S3Server, minio_client: Minio, tmp_path: Path
) -> None:
    cluster = new_cluster()
    env = mixer_env(kafka, s3, tmp_path, cluster)
    key = f"{cluster}:1"
    near, far, done = simple_call(key, packets=100)
    active = done.model_copy(update={"status": CallStatus.ACTIVE, "version": 1, "ended_at": None})
    first = start_mixer(env, tmp_path / "a")
    second = None
    try:
        await wait_health(tmp_path / "a" / "health.json", "partitions")
        landed = await publish(kafka.bootstrap, [active, *near[:5], *far[:5]])
        await wait_health(tmp_path / "a" / "health.json", "open_calls")
        group, audio = env["CALLREC_MIXER_GROUP_ID"], landed[1]
        # Until the mixer commits the open call's first chunk on its partition (a commit made
        # before it read that far is lower, never higher): from then on it must stay there.
        deadline = time.monotonic() + 30
        while (at := await committed(kafka.bootstrap, group, AUDIO.name, audio.partition)
               ) != audio.offset:
            assert at is None or at < audio.offset, (at, audio.offset)  # never past the call
            assert time.monotonic() < deadline, f"the mixer committed {at}, not {audio.offset}"
            await asyncio.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        assert await committed(kafka.bootstrap, group, AUDIO.name, audio.partition) == audio.offset
        second = start_mixer(env, tmp_path / "b")
        await publish(kafka.bootstrap, [*near[5:], *far[5:], done])
        [event] = await archived(kafka.bootstrap, {key}, within=90, settle=2)
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, (tmp_path / "b" / "stderr.log").read_text()[-3000:]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    bucket = env["CALLREC_S3_BUCKET"]
    assert versions(minio_client, bucket, event.object_key) == 1
    data = minio_client.get_object(bucket, event.object_key).read()
    assert hashlib.sha256(data).hexdigest() == event.sha256
    _, pcm = wav_channels(data)
    np.testing.assert_array_equal(pcm[:, 0], payload_pcm(near))
    np.testing.assert_array_equal(pcm[:, 1], payload_pcm(far))


async def test_store_down_during_upload_is_retried_and_stores_once(
    kafka: KafkaBroker, s3: S3Server, minio_client: Minio, tmp_path: Path
) -> None:
    cluster = new_cluster()
    env = mixer_env(kafka, s3, tmp_path, cluster)
    settings = settings_from(env)
    key = f"{cluster}:2"
    near, far, done = simple_call(key, packets=50)
    async with running(settings):
        await wait_health(tmp_path / "health.json", "partitions")
        s3.stop()
        try:
            await publish(kafka.bootstrap, [*near, *far, done])
            status = await wait_health(tmp_path / "health.json", "store_failing_since")
            assert status["open_calls"] == 1 and status["state"] == "degraded"
        finally:
            s3.start()
        [event] = await archived(kafka.bootstrap, {key}, within=60)
    assert versions(minio_client, settings.s3_bucket, event.object_key) == 1
    data = minio_client.get_object(settings.s3_bucket, event.object_key).read()
    assert hashlib.sha256(data).hexdigest() == event.sha256
    _, pcm = wav_channels(data)
    np.testing.assert_array_equal(pcm[:, 0], payload_pcm(near))
