"""Call-state workers as real processes (started and stopped by PID), and a reader of what they
publish, for the integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from callrec.avro import codec
from callrec.avro.errors import ContractError
from callrec.avro.events import CallRecord, DeadLetter, Event, MetricSample
from callrec.avro.topics import AUDIO, CALLS, DEADLETTER, LIFECYCLE, METRICS
from callrec.eventlog import EventPublisher, LogAdmin
from callrec.infra.procs import ManagedProcess
from tests.streams.factory import heartbeat

FAST_RULES = {
    "CALLREC_STREAMS_MEDIA_TIMEOUT_S": "4",
    "CALLREC_STREAMS_RECORDER_LOST_AFTER_S": "3",
    "CALLREC_STREAMS_HALF_CALL_WINDOW_S": "3",
    "CALLREC_STREAMS_SEGMENT_WINDOW_S": "2",
    "CALLREC_STREAMS_SESSION_GRACE_S": "1",
    "CALLREC_STREAMS_AUDIO_SNAPSHOT_INTERVAL_S": "1",
    "CALLREC_STREAMS_METRICS_WINDOW_S": "2",
    "CALLREC_STREAMS_SESSION_TIMEOUT_S": "6",
    "CALLREC_STREAMS_RECORDER_LOOKBACK_S": "30",
}


class StreamsWorker:
    """One `python -m callrec.streams` process with its own data dir."""

    def __init__(self, bootstrap: str, app_id: str, run_dir: Path, name: str,
                 extra_env: dict[str, str] | None = None) -> None:
        self.name = name
        self.app_id = app_id
        """The worker's consumer group."""
        self.data_dir = run_dir / name
        self.process = ManagedProcess(name, run_dir)
        self.env = {
            "CALLREC_KAFKA_BOOTSTRAP": bootstrap,
            "CALLREC_STREAMS_APP_ID": app_id,
            "CALLREC_STREAMS_WORKER_ID": name,
            "CALLREC_STREAMS_DATA_DIR": str(self.data_dir),
            **FAST_RULES,
            **(extra_env or {}),
        }

    def start(self) -> int:
        return self.process.start([sys.executable, "-m", "callrec.streams"], env=self.env)

    def health(self) -> dict[str, object] | None:
        try:
            loaded: dict[str, object] = json.loads((self.data_dir / "health.json").read_text())
        except (OSError, ValueError):
            return None
        return loaded

    def wait_assigned(self, timeout: float = 60.0) -> list[int]:
        """Wait until the worker owns partitions and knows the recorders."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.health()
            if health and health["assigned_partitions"] and health["recorders_ready"]:
                assert isinstance(health["assigned_partitions"], list)
                return health["assigned_partitions"]
            if self.process.pid() is None:
                raise AssertionError(f"{self.name} exited:\n{self.log()}")
            time.sleep(0.3)
        raise AssertionError(f"{self.name} never got partitions:\n{self.log()}")

    def recorders_known(self) -> int:
        known = (self.health() or {}).get("recorders_known", 0)
        assert isinstance(known, int)
        return known

    async def wait_recorders(self, at_least: int, within_s: float = 30.0) -> None:
        """Until the worker's recorder feed has seen ``at_least`` recorders (so calls of a
        recorder that beats are not judged before its first heartbeat arrives)."""
        deadline = time.monotonic() + within_s
        while self.recorders_known() < at_least:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} knows {self.recorders_known()} recorders, "
                                     f"not {at_least}:\n{self.log()}")
            await asyncio.sleep(0.2)

    def log(self) -> str:
        try:
            return self.process.log_file.read_text()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()


async def publish(bootstrap: str, events: Iterable[Event]) -> None:
    publisher = EventPublisher(bootstrap, f"streams-test-{uuid.uuid4()}")
    await publisher.start()
    try:
        futures = [await publisher.enqueue(event) for event in events]
        await asyncio.gather(*futures)
    finally:
        await publisher.stop()


@contextlib.asynccontextmanager
async def heartbeats(bootstrap: str, recorders: dict[str, str],
                     every_s: float = 0.5) -> AsyncIterator[dict[str, str]]:
    """Heartbeats for ``recorders`` (id -> incarnation) until the block ends; mutate the dict
    to restart (new incarnation) or remove a recorder (it dies)."""
    publisher = EventPublisher(bootstrap, f"streams-hb-{uuid.uuid4()}")
    await publisher.start()

    async def beat() -> None:
        seq = 0
        while True:
            now = time.time_ns() // 1000
            for recorder, incarnation in list(recorders.items()):
                await publisher.enqueue(heartbeat(recorder, incarnation, now, seq))
            seq += 1
            await asyncio.sleep(every_s)

    task = asyncio.create_task(beat())
    try:
        yield recorders
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await publisher.stop()


@contextlib.contextmanager
def running_worker(bootstrap: str, app_id: str, data_dir: Path, name: str
                   ) -> Iterator[StreamsWorker]:
    """A worker process that owns its partitions for the block, stopped by PID after it."""
    proc = StreamsWorker(bootstrap, app_id, data_dir, name)
    proc.start()
    try:
        proc.wait_assigned()
        yield proc
    finally:
        proc.stop()


class Reader:
    """Reads rec.calls.v1, rec.deadletter.v1 and rec.metrics.v1 from the start, keeping what
    concerns the test's own call keys."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(
            CALLS.name, DEADLETTER.name, METRICS.name, bootstrap_servers=bootstrap,
            group_id=f"streams-test-{uuid.uuid4()}", auto_offset_reset="earliest",
        )
        self.records: dict[str, list[CallRecord]] = {}
        self.dead: list[DeadLetter] = []
        self.metrics: list[MetricSample] = []

    async def __aenter__(self) -> Reader:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self, seconds: float = 0.5) -> None:
        batch = await self.consumer.getmany(timeout_ms=int(seconds * 1000))
        for records in batch.values():
            for record in records:
                try:
                    event = codec.decode(record.value or b"")
                except ContractError:
                    continue  # another test's deliberately bad record (dead-lettered by us)
                if isinstance(event, CallRecord):
                    self.records.setdefault(event.call_key, []).append(event)
                elif isinstance(event, DeadLetter):
                    self.dead.append(event)
                elif isinstance(event, MetricSample):
                    self.metrics.append(event)

    def latest(self, key: str) -> CallRecord | None:
        versions = self.records.get(key)
        return max(versions, key=lambda r: r.version) if versions else None

    async def wait_for(self, keys: Iterable[str], done: object, within_s: float = 30.0
                       ) -> dict[str, CallRecord]:
        """Poll until ``done(record)`` holds for the latest record of every key."""
        wanted = list(keys)
        deadline = time.monotonic() + within_s
        while True:
            latest = {k: self.latest(k) for k in wanted}
            if all(r is not None and done(r) for r in latest.values()):  # type: ignore[operator]
                return {k: r for k, r in latest.items() if r is not None}
            if time.monotonic() > deadline:
                missing = {k: (r.status, r.abnormal_reason) if r else None
                           for k, r in latest.items()}
                raise AssertionError(f"timed out; latest records: {missing}")
            await self.poll()


async def wait_committed(bootstrap: str, group: str, within_s: float = 30.0) -> None:
    """Until ``group`` has committed every record of the call topics (what a worker folded is
    then behind its committed offsets, whoever dies next)."""
    admin = LogAdmin(bootstrap, f"streams-test-{uuid.uuid4().hex[:6]}")
    await admin.start()
    try:
        deadline = time.monotonic() + within_s
        while (left := await admin.uncommitted(group, [LIFECYCLE.name, AUDIO.name])) > 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"group {group} still has {left} records uncommitted")
            await asyncio.sleep(0.2)
    finally:
        await admin.stop()
