"""Spool-first publishing: events go to disk, then to Kafka in order, and leave disk on ack.

The producer is idempotent with acks=all and never gives up on a batch it has sent (aiokafka
retries an idempotent batch with the same producer id and sequence until the broker takes it),
so a broker restart neither loses nor duplicates what was in flight. At most ``window`` records
are in aiokafka's memory; the rest wait in the spool while Kafka is away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from aiokafka.structs import RecordMetadata

from callrec.avro import codec
from callrec.avro.events import Event
from callrec.avro.topics import TOPIC_OF
from callrec.eventlog import EventLogError, EventLogUnavailable, EventPublisher, kafka_errors
from callrec.producers.spool import Spool, SpooledRecord

log = logging.getLogger(__name__)
UNREACHABLE_AFTER_S = 3.0


class Outbox:
    """Owns the spool's reading side and the Kafka producer; ``put`` is the only way in."""

    def __init__(
        self, spool: Spool, new_publisher: Callable[[], EventPublisher], window: int = 2000
    ) -> None:
        self.spool = spool
        self._new_publisher = new_publisher
        self._publisher: EventPublisher | None = None
        self.window = window
        self._inflight: deque[tuple[SpooledRecord, float, asyncio.Future[RecordMetadata]]] = deque()
        self._wake_sender = asyncio.Event()
        self._wake_acker = asyncio.Event()
        self._rewind_to: int | None = None
        self.published = 0
        self.rejected = 0
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
            self._inflight.append((record, time.monotonic(), future))
            self._wake_acker.set()

    async def _ack_loop(self) -> None:
        while True:
            if not self._inflight:
                self._wake_acker.clear()
                await self._wake_acker.wait()
                continue
            record, _, future = self._inflight[0]
            try:
                with kafka_errors(f"{record.topic} seq {record.seq}"):
                    await asyncio.shield(future)
            except EventLogError as e:
                if e.retriable and self._rewind_to is None:
                    log.warning("Kafka gave up on seq %d (%r); resending from it", record.seq, e)
                    self._rewind_to = record.seq
                elif not e.retriable:
                    self.rejected += 1
                    log.error("Kafka refused %s seq %d for good: %r", record.topic, record.seq, e)
            self._inflight.popleft()
            if self._rewind_to is None or record.seq < self._rewind_to:
                self.spool.ack(record.seq, record.size)
                self.published += 1
            self._wake_sender.set()

    async def _restart_after_loss(self) -> None:
        """Records after a failed one may or may not have landed: resend them all, once."""
        while self._inflight:  # noqa: ASYNC110 - the ack loop empties it
            await asyncio.sleep(0.05)
        assert self._rewind_to is not None and self._publisher is not None
        await self._publisher.stop()
        self.spool.rewind(self._rewind_to)
        self._rewind_to = None
        self._publisher = await self._connect()

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self.spool.checkpoint()
