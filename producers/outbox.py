"""Spool-first publishing: events go to disk, then to Kafka in order, and leave disk on ack.

The producer is idempotent with acks=all and never gives up on a batch it has sent (aiokafka
retries an idempotent batch with the same producer id and sequence until the broker takes it),
so a broker restart neither loses nor duplicates what was in flight. At most ``window`` records
are in aiokafka's memory; the rest wait in the spool while Kafka is away.

A record Kafka refuses for good (``EventLogRefused``: too large, invalid) would block every later
one if it were resent, and must not vanish: it goes to the quarantine file beside the spool
(``quarantine.py``), and a bounded dead letter of it and a ``records_quarantined_total`` sample
go through the spool after it; only then does the spool forget it and the outbox move on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka.structs import RecordMetadata

from callrec.avro import codec
from callrec.avro.events import Event, MetricSample
from callrec.avro.topics import DEADLETTER, TOPIC_OF
from callrec.eventlog import (
    EventLogError,
    EventLogRefused,
    EventLogUnavailable,
    EventPublisher,
    UnsentRecord,
    dead_letter_for,
    kafka_errors,
)
from callrec.producers.errors import SpoolFull
from callrec.producers.quarantine import Quarantine, quarantined
from callrec.producers.spool import Spool, SpooledRecord

log = logging.getLogger(__name__)
UNREACHABLE_AFTER_S = 3.0
QUARANTINE_RETRY_S = 1.0
"""A quarantine file that cannot be written (disk full) is tried again after this long."""
QUARANTINED_METRIC = "records_quarantined_total"


class Outbox:
    """Owns the spool's reading side and the Kafka producer; ``put`` is the only way in."""

    def __init__(
        self, spool: Spool, new_publisher: Callable[[], EventPublisher], window: int = 2000,
        producer_id: str = "recorder", quarantine: Quarantine | None = None,
    ) -> None:
        self.spool = spool
        self.producer_id = producer_id
        self.quarantine = quarantine or Quarantine(spool.directory.parent / "quarantine")
        self._quarantine_failed = False
        self._last_sample_us = time.time_ns() // 1000
        self._new_publisher = new_publisher
        self._publisher: EventPublisher | None = None
        self.window = window
        self._inflight: deque[tuple[SpooledRecord, float, asyncio.Future[RecordMetadata]]] = deque()
        self._wake_sender = asyncio.Event()
        self._wake_acker = asyncio.Event()
        self._rewind_to: int | None = None
        self.published = 0
        self.rejected = 0
        """Records Kafka refused for good, each now in the quarantine file."""
        self._tasks: list[asyncio.Task[None]] = []

    def put(self, event: Event) -> None:
        """Make the event durable now (SpoolFull if the bound is reached); Kafka follows."""
        value = codec.encode(event)
        self.put_encoded(TOPIC_OF[type(event)].name, event.kafka_key, event.avro_name, value)

    def put_encoded(self, topic: str, key: bytes, event_type: str, value: bytes) -> None:
        """``put`` for bytes already encoded by the contract's codec (the audio hot path)."""
        self.spool.append(topic, key, event_type, value)
        self._wake_sender.set()

    @property
    def kafka_reachable(self) -> bool:
        """Kafka took our records recently, or nothing has been waiting long for it."""
        if self._publisher is None:
            return False
        return not self._inflight or time.monotonic() - self._inflight[0][1] < UNREACHABLE_AFTER_S

    @property
    def backlog(self) -> int:
        """Records written but not acknowledged (spooled plus in flight)."""
        return int(self.spool.next_seq - 1 - self.spool.acked_seq)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="outbox-send"),
            asyncio.create_task(self._ack_loop(), name="outbox-ack"),
            asyncio.create_task(self._checkpoint_loop(), name="outbox-checkpoint"),
        ]

    async def flush(self, timeout_s: float) -> bool:
        """Wait until Kafka has acknowledged everything spooled so far (True) or time is up."""
        deadline = time.monotonic() + timeout_s
        target: int = self.spool.next_seq - 1
        while self.spool.acked_seq < target and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return bool(self.spool.acked_seq >= target)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._publisher is not None:
            await self._publisher.stop()
        self.spool.close()

    async def _connect(self) -> EventPublisher:
        while True:
            publisher = self._new_publisher()
            try:
                await publisher.start()
            except EventLogUnavailable as e:
                log.warning("Kafka unreachable, events stay in the spool: %s", e)
                await asyncio.sleep(1.0)
                continue
            log.info("connected to Kafka; %d events to catch up", self.backlog)
            return publisher

    async def _send_loop(self) -> None:
        self._publisher = await self._connect()
        while True:
            if self._rewind_to is not None:
                await self._restart_after_loss()
                continue
            if len(self._inflight) >= self.window:
                self._wake_sender.clear()
                await self._wake_sender.wait()
                continue
            record = self.spool.read_next()
            if record is None:
                self._wake_sender.clear()
                await self._wake_sender.wait()
                continue
            try:
                future = await self._publisher.enqueue_encoded(
                    record.topic, record.key, record.value, record.event_type
                )
            except EventLogUnavailable as e:
                log.warning("send failed, will resend from the spool: %s", e)
                self._rewind_to = record.seq if self._rewind_to is None else self._rewind_to
                continue
            except EventLogRefused as e:  # refused before it left (larger than the producer takes)
                future = asyncio.get_running_loop().create_future()
                future.set_exception(e)  # the ack loop quarantines it in its turn
            self._inflight.append((record, time.monotonic(), future))
            self._wake_acker.set()

    async def _ack_loop(self) -> None:
        while True:
            if not self._inflight:
                self._wake_acker.clear()
                await self._wake_acker.wait()
                continue
            record, _, future = self._inflight[0]
            refused: EventLogError | None = None
            try:
                with kafka_errors(f"{record.topic} seq {record.seq}"):
                    await asyncio.shield(future)
            except EventLogError as e:
                if not e.retriable:
                    refused = e
                elif self._rewind_to is None:
                    log.warning("Kafka gave up on seq %d (%r); resending from it", record.seq, e)
                    self._rewind_to = record.seq
            self._inflight.popleft()
            if self._rewind_to is None or record.seq < self._rewind_to:
                if refused is None:
                    self.spool.ack(record.seq, record.size)
                    self.published += 1
                elif self._quarantined(record, refused):
                    self.spool.ack(record.seq, record.size)
                else:  # kept in the spool: resent (and refused) until the quarantine takes it
                    self._quarantine_failed = True
                    self._rewind_to = record.seq
            self._wake_sender.set()

    def _quarantined(self, record: SpooledRecord, error: EventLogError) -> bool:
        """Keep a refused record in the quarantine file and report it through the spool."""
        why = f"{type(error).__name__}: {error}"
        try:
            self.quarantine.keep(quarantined(
                record.seq, record.topic, record.event_type, record.key, record.value, why,
                datetime.now(UTC),
            ))
        except OSError as e:
            log.error("cannot quarantine %s seq %d (%s); it stays in the spool",
                      record.topic, record.seq, e)
            return False
        self.rejected += 1
        log.error("Kafka refused %s seq %d (%d bytes) for good, quarantined in %s: %s",
                  record.topic, record.seq, len(record.value), self.quarantine.path, why)
        if record.topic == DEADLETTER.name:
            return True  # a refused dead letter gets no dead letter of its own: no loop
        letter = dead_letter_for(UnsentRecord(record.topic, record.key, record.value), error,
                                 self.producer_id)
        try:
            self.put(letter)
            self.put(self._quarantined_sample())
        except SpoolFull as e:
            log.error("no dead letter for quarantined seq %d (%s); it is in %s",
                      record.seq, e, self.quarantine.path)
        return True

    def _quarantined_sample(self) -> MetricSample:
        """One more quarantined record, as a counter sample of its own window (the exporter
        folds each window of a series once, so windows never overlap)."""
        start = self._last_sample_us
        end = self._last_sample_us = max(time.time_ns() // 1000, start + 1)
        return MetricSample(
            producer_id=self.producer_id, metric=QUARANTINED_METRIC,
            labels={"recorder": self.producer_id}, value=1.0,
            window_start=datetime.fromtimestamp(start / 1e6, UTC),
            window_end=datetime.fromtimestamp(end / 1e6, UTC),
        )

    async def _restart_after_loss(self) -> None:
        """Records after a failed one may or may not have landed: resend them all, once."""
        while self._inflight:  # noqa: ASYNC110 - the ack loop empties it
            await asyncio.sleep(0.05)
        assert self._rewind_to is not None and self._publisher is not None
        if self._quarantine_failed:
            self._quarantine_failed = False
            await asyncio.sleep(QUARANTINE_RETRY_S)
        await self._publisher.stop()
        self.spool.rewind(self._rewind_to)
        self._rewind_to = None
        self._publisher = await self._connect()

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self.spool.checkpoint()
