"""The replica's read model: rec.calls.v1, rec.recordings.v1 and rec.audit.v1 -> SQLite.

No consumer group: every replica reads every partition from its own stored offsets (the
beginning, the first time), so each replica is a complete, independent copy that a kill -9
cannot leave half-applied. Changed calls are announced to the live feed after their commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from callrec.api import queries
from callrec.api.avro_rows import decode_row
from callrec.api.rows import audit_row, call_row, recording_row
from callrec.avro import codec
from callrec.avro.errors import ContractError
from callrec.avro.events import AccessAudited, CallRecord, RecordingArchived
from callrec.avro.topics import AUDIT, CALLS, RECORDINGS
from callrec.errors import RetriableError
from callrec.eventlog import EventLogError, kafka_errors, new_consumer, topic_partitions

log = logging.getLogger(__name__)
TOPICS = (CALLS.name, RECORDINGS.name, AUDIT.name)


@dataclass
class Progress:
    """What /healthz and /readyz report: how far this replica is behind the log."""

    positions: dict[TopicPartition, int] = field(default_factory=dict)
    ends: dict[TopicPartition, int] = field(default_factory=dict)
    resumed_from: int = 0
    """Records already applied (stored offsets) when this process started."""
    applied: int = 0
    """Records applied by this process."""
    skipped: int = 0
    """Records that were not contract events (left to the topic's dead-letter owners)."""
    caught_up_once: bool = False
    checked_at: float = 0.0
    error: str | None = None

    @property
    def lag(self) -> int:
        return sum(max(0, end - self.positions.get(tp, 0)) for tp, end in self.ends.items())


@dataclass
class Batch:
    calls: dict[str, tuple[object, ...]] = field(default_factory=dict)
    recordings: list[tuple[object, ...]] = field(default_factory=list)
    audits: list[tuple[object, ...]] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)

    def add(self, topic: str, partition: int, offset: int, value: bytes | None) -> bool:
        """Turn one record into rows; False if it is not a contract event we know."""
        self.offsets[(topic, partition)] = offset + 1
        data = value or b""
        fast = decode_row(data)  # most records: no models built (avro_rows.py)
        if fast is not None:
            if fast.model is CallRecord:
                self._call(fast.call_key, fast.row)
            else:
                self.recordings.append(fast.row)
                self.changed.add(fast.call_key)
            return True
        try:
            event = codec.decode(data)
        except ContractError:
            return False
        if isinstance(event, CallRecord):
            self._call(event.call_key, call_row(event))
        elif isinstance(event, RecordingArchived):
            self.recordings.append(recording_row(event))
            self.changed.add(event.call_key)
        elif isinstance(event, AccessAudited):
            self.audits.append(audit_row(event))
        else:
            return False
        return True

    def _call(self, call_key: str, row: tuple[object, ...]) -> None:
        older = self.calls.get(call_key)
        # Within a batch keep the newest too: one executemany row per key.
        if older is None or (row[1], row[2]) > (older[1], older[2]):
            self.calls[call_key] = row
        self.changed.add(call_key)


class ReadModel:
    def __init__(self, bootstrap: str, db_path: Path, client_id: str,
                 on_change: Callable[[set[str]], None] | None = None) -> None:
        self.bootstrap = bootstrap
        self.db_path = db_path
        self.client_id = client_id
        self.on_change = on_change or (lambda keys: None)
        self.progress = Progress()
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = queries.connect(db_path)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop``; Kafka outages are waited out, never fatal."""
        while not stop.is_set():
            try:
                with kafka_errors("read model"):
                    await self._consume(stop)
            except (EventLogError, OSError, RetriableError) as e:
                self.progress.error = f"Kafka: {e}"
                log.warning("read model: %s; retrying in 2 s", e)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2)

    async def _consume(self, stop: asyncio.Event) -> None:
        consumer = new_consumer(
            self.bootstrap, self.client_id, auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        try:
            tps = await topic_partitions(self.bootstrap, TOPICS)
            consumer.assign(tps)
            stored = queries.stored_offsets(self.conn)
            self.progress.resumed_from = sum(stored.values())
            for tp in tps:
                if (tp.topic, tp.partition) in stored:
                    consumer.seek(tp, stored[(tp.topic, tp.partition)])
                else:
                    await consumer.seek_to_beginning(tp)
            # Where each partition really starts (a compacted or expired log may not start at 0).
            self.progress.positions = {tp: await consumer.position(tp) for tp in tps}
            self.progress.error = None
            while not stop.is_set():
                await self._refresh_ends(consumer, tps)
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                batch = Batch()
                for tp, records in batches.items():
                    for record in records:
                        if not batch.add(tp.topic, tp.partition, record.offset, record.value):
                            self.progress.skipped += 1
                        self.progress.applied += 1
                if batch.offsets:
                    await asyncio.to_thread(self._commit, batch)
                    for (topic, partition), offset in batch.offsets.items():
                        self.progress.positions[TopicPartition(topic, partition)] = offset
                    if batch.changed:
                        self.on_change(batch.changed)
        finally:
            await consumer.stop()

    def _commit(self, batch: Batch) -> None:
        queries.apply_batch(self.conn, batch.calls.values(), batch.recordings, batch.audits,
                            batch.offsets)

    async def _refresh_ends(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        """Ask for the log end at most once a second: the lag /healthz and /readyz report."""
        now = time.monotonic()
        if now - self.progress.checked_at < 1.0:
            return
        self.progress.ends = await consumer.end_offsets(tps)
        self.progress.positions = {tp: await consumer.position(tp) for tp in tps}
        self.progress.checked_at = now
        if self.progress.lag == 0:
            self.progress.caught_up_once = True
