"""Drive a mixer against the session's real Kafka and S3: settings, events in, recordings out."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
import uuid
import wave
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import RecordMetadata
from minio import Minio

from callrec.avro import codec
from callrec.avro.events import DeadLetter, Event, RecordingArchived
from callrec.avro.topics import AUDIO, DEADLETTER, RECORDINGS
from callrec.eventlog import EventPublisher
from callrec.infra.kafka import KafkaBroker
from callrec.infra.s3 import S3Server
from callrec.sinks.main import serve
from callrec.sinks.manifests import generate_key, public_key_path
from callrec.sinks.settings import MixerSettings


def mixer_env(kafka: KafkaBroker, s3: S3Server, tmp: Path, cluster: str, **extra: str) -> dict[
    str, str
]:
    """CALLREC_* variables of a mixer isolated by bucket, group, cluster and directories, with
    its manifest key made (`callrec mixer keygen`)."""
    key = tmp / "manifest.pem"
    if not key.exists():
        generate_key(key)
    env = {
        "CALLREC_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "CALLREC_S3_ENDPOINT": s3.endpoint,
        "CALLREC_S3_ACCESS_KEY": s3.access_key,
        "CALLREC_S3_SECRET_KEY": s3.secret_key,
        "CALLREC_S3_BUCKET": f"rec-{uuid.uuid4().hex[:12]}",
        "CALLREC_MIXER_GROUP_ID": f"mixer-test-{uuid.uuid4().hex[:8]}",
        "CALLREC_MIXER_CLUSTERS": cluster,
        "CALLREC_MIXER_SPOOL_DIR": str(tmp / "spool"),
        "CALLREC_MIXER_HEALTH_FILE": str(tmp / "health.json"),
        "CALLREC_MIXER_MANIFEST_KEY": str(key),
        "CALLREC_MIXER_MANIFEST_PUBLIC_KEY": str(public_key_path(key)),
        "CALLREC_MIXER_COMPLETE_WAIT_S": "1.0",
        "CALLREC_MIXER_SESSION_TIMEOUT_MS": "6000",
        "CALLREC_MIXER_COMMIT_INTERVAL_S": "0.3",
        "CALLREC_MIXER_UPLOAD_BACKOFF_MAX_S": "1.0",
    }
    env.update(extra)
    return env


def settings_from(env: dict[str, str]) -> MixerSettings:
    fields = {k.removeprefix("CALLREC_").lower(): v for k, v in env.items()}
    return MixerSettings(**fields)  # type: ignore[arg-type]


def new_cluster() -> str:
    return f"T{uuid.uuid4().hex[:10]}"


async def publish(bootstrap: str, events: Iterable[Event]) -> list[RecordMetadata]:
    """Publish in order; returns where each event landed."""
    publisher = EventPublisher(bootstrap, "mixer-test")
    await publisher.start()
    try:
        return [await publisher.publish(event) for event in events]
    finally:
        await publisher.stop()


async def publish_raw(bootstrap: str, topic: str, key: str, value: bytes) -> None:
    """Bytes that are not a contract event, as a broken producer would send them."""
    publisher = EventPublisher(bootstrap, "mixer-test")
    await publisher.start()
    try:
        await (await publisher.enqueue_encoded(topic, key.encode(), value, "AudioChunk"))
    finally:
        await publisher.stop()


async def committed(bootstrap: str, group_id: str, topic: str, partition: int) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id)
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(TopicPartition(topic, partition))
        return offset
    finally:
        await consumer.stop()


async def wait_for_events(
    bootstrap: str, topic: str, accept: Callable[[Event], bool], want: int, keys: set[bytes],
    within: float = 60.0, settle: float = 0.0,
) -> list[Event]:
    """Accepted events on ``topic`` whose Kafka key is in ``keys``, read from the start; waits
    for ``want`` of them, then ``settle`` seconds more to catch any extra."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        group_id=f"mixer-test-reader-{uuid.uuid4().hex[:8]}", enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Event] = []
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                for record in records:
                    if record.key not in keys:
                        continue
                    event = codec.decode(record.value or b"")
                    if accept(event):
                        found.append(event)
            if len(found) >= want:
                if settle <= 0:
                    break
                await asyncio.sleep(settle)
                settle = 0
        return found
    finally:
        await consumer.stop()


async def archived(bootstrap: str, call_keys: set[str], within: float = 60.0, settle: float = 0.0
                   ) -> list[RecordingArchived]:
    events = await wait_for_events(
        bootstrap, RECORDINGS.name, lambda e: isinstance(e, RecordingArchived), len(call_keys),
        {k.encode() for k in call_keys}, within, settle,
    )
    return [e for e in events if isinstance(e, RecordingArchived)]


async def dead_letters(
    bootstrap: str, call_key: str, want: int = 1, within: float = 30.0
) -> list[DeadLetter]:
    def ours(event: Event) -> bool:
        return isinstance(event, DeadLetter) and event.source_key == call_key.encode()

    events = await wait_for_events(
        bootstrap, DEADLETTER.name, ours, want, {AUDIO.name.encode()}, within
    )
    return [e for e in events if isinstance(e, DeadLetter)]


def wav_channels(data: bytes) -> tuple[int, np.ndarray]:
    """(sample rate, samples as (frames, channels)) of a 16-bit WAV file."""
    with wave.open(io.BytesIO(data)) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return w.getframerate(), frames.reshape(-1, w.getnchannels())


@asynccontextmanager
async def running(settings: MixerSettings) -> AsyncIterator[None]:
    """A mixer worker in this process for the block's length."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def versions(client: Minio, bucket: str, key: str) -> int:
    return sum(1 for _ in client.list_objects(bucket, prefix=key, include_version=True))


def start_mixer(env: dict[str, str], home: Path) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    own = {
        "CALLREC_MIXER_SPOOL_DIR": str(home / "spool"),
        "CALLREC_MIXER_HEALTH_FILE": str(home / "health.json"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "callrec.sinks"],
        env={**os.environ, **env, **own},
        stdout=subprocess.DEVNULL,
        stderr=(home / "stderr.log").open("wb"),
        cwd=home,
    )
