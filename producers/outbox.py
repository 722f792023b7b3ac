"""Spool-first publishing: events go to disk, then to Kafka in order, and leave disk on ack.

The producer is idempotent with acks=all and never gives up on a batch it has sent (aiokafka
retries an idempotent batch with the same producer id and sequence until the broker takes it),
so a broker restart neither loses nor duplicates what was in flight. At most ``window_bytes`` of
records are in aiokafka's memory; the rest wait in the spool while Kafka is away.

The sending runs on a thread of its own, with its own event loop (``start``): aiokafka needs
several turns of its loop per produce request (drain, send, read the answer, resolve, hand the
next), and on the recorder's loop each turn waited behind every RTP socket that had data, more of
them the more the recorder lagged: at 250-500 calls on a loaded machine Kafka acknowledged
nothing for 10 s and more while the chunks piled up in the spool. On its own thread a turn waits
at most for the GIL's switch interval. ``put`` (any thread) writes the spool, which is locked
for it, and wakes the sender only when it sleeps.

A record Kafka refuses for good (``EventLogRefused``: too large, invalid) would block every later
one if it were resent, and must not vanish: it goes to the quarantine file beside the spool
(``quarantine.py``), and a bounded dead letter of it and a ``records_quarantined_total`` sample
go through the spool after it; only then does the spool forget it and the outbox move on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka.structs import RecordMetadata

from callrec.avro import codec
from callrec.avro.events import Event, MetricSample
from callrec.avro.topics import DEADLETTER, TOPIC_OF
from callrec.deadletters import UnsentRecord, dead_letter_for
from callrec.eventlog import (
    EventLogError,
    EventLogRefused,
    EventLogUnavailable,
    EventPublisher,
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
WINDOW_BYTES = 16 * 1024 * 1024
"""Records handed to Kafka and not yet acknowledged, at most (~8,000 chunks, 1.6 s at 500
calls). aiokafka sends one request per broker at a time, so a request carries what was queued
while the last one was out: the window must hold more than one request can carry (a batch per
partition, 6 x 512 KB), which the former 2,000 records (~4 MB) barely did."""
LINGER_S = 0.005
"""After a wake the sender waits this long (the producer's own ``linger_ms``) before reading:
one wake and one batch per partition for the chunks of 5 ms, not a thread switch per chunk."""
GROUP_RECORDS = 512
"""Records handed to the producer at once (``enqueue_many``: one batch per partition); the
sender thread's loop turns between two groups, so acks are taken while a catch-up is sent."""


class Outbox:
    """Owns the spool's reading side and the Kafka producer; ``put`` is the only way in."""

    def __init__(
        self, spool: Spool, new_publisher: Callable[[], EventPublisher],
        window_bytes: int = WINDOW_BYTES, producer_id: str = "recorder",
        quarantine: Quarantine | None = None,
    ) -> None:
        self.spool = spool
        self.producer_id = producer_id
        self.quarantine = quarantine or Quarantine(spool.directory.parent / "quarantine")
        self._quarantine_failed = False
        self._last_sample_us = time.time_ns() // 1000
        self._new_publisher = new_publisher
        self._publisher: EventPublisher | None = None
        self.window_bytes = window_bytes
        self._inflight_bytes = 0
        self._inflight: deque[tuple[SpooledRecord, float, asyncio.Future[RecordMetadata]]] = deque()
        self._wake_sender = asyncio.Event()  # both belong to the sender thread's loop
        self._wake_acker = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._idle = False
        """The sender waits for a put (set by the sender, cleared by the put that wakes it)."""
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
        if self._idle and self._loop is not None:
            self._idle = False
            self._loop.call_soon_threadsafe(self._wake_sender.set)

    @property
    def kafka_reachable(self) -> bool:
        """Kafka took our records recently, or nothing has been waiting long for it."""
        if self._publisher is None:
            return False
        try:
            return time.monotonic() - self._inflight[0][1] < UNREACHABLE_AFTER_S
        except IndexError:  # nothing in flight (the sender thread may just have emptied it)
            return True

    @property
    def in_flight_bytes(self) -> int:
        """Bytes of the records handed to Kafka and not yet acknowledged (or failed)."""
        return self._inflight_bytes

    @property
    def backlog(self) -> int:
        """Records written but not acknowledged (spooled plus in flight)."""
        return int(self.spool.next_seq - 1 - self.spool.acked_seq)

    def start(self) -> None:
        """Start sending, on the outbox's own thread (returns once its loop runs)."""
        running = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(running),),
                                        name="outbox", daemon=True)  # fmt: skip
        self._thread.start()
        running.wait()

    async def _serve(self, running: threading.Event) -> None:
        """The sender thread's loop: send, acknowledge and checkpoint until ``close``."""
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="outbox-send"),
            asyncio.create_task(self._ack_loop(), name="outbox-ack"),
            asyncio.create_task(self._checkpoint_loop(), name="outbox-checkpoint"),
        ]
        running.set()
        for result in await asyncio.gather(*self._tasks, return_exceptions=True):
            if not isinstance(result, asyncio.CancelledError | None):
                log.error("outbox task failed: %r", result)
        if self._publisher is not None:
            await self._publisher.stop()

    async def flush(self, timeout_s: float) -> bool:
        """Wait until Kafka has acknowledged everything spooled so far (True) or time is up."""
        deadline = time.monotonic() + timeout_s
        target: int = self.spool.next_seq - 1
        while self.spool.acked_seq < target and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return bool(self.spool.acked_seq >= target)

    async def close(self) -> None:
        """Stop sending (what Kafka has not acknowledged stays in the spool) and close it."""
        loop, self._loop = self._loop, None  # a later put wakes no one
        if loop is not None and self._thread is not None:
            for task in self._tasks:
                loop.call_soon_threadsafe(task.cancel)
            await asyncio.to_thread(self._thread.join)
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
            group = await self._next_or_wait()
            if not group:
                continue
            try:
                futures = await self._publisher.enqueue_many(
                    (r.topic, r.key, r.value, r.event_type) for r in group
                )
            except EventLogUnavailable as e:
                log.warning("send failed, will resend from the spool: %s", e)
                self._rewind_to = group[0].seq if self._rewind_to is None else self._rewind_to
                continue
            except EventLogRefused as e:  # refused before it left: the ack loop quarantines
                futures = [asyncio.get_running_loop().create_future() for _ in group]
                for future in futures:
                    future.set_exception(e)
            now = time.monotonic()
            for record, future in zip(group, futures, strict=True):
                self._inflight.append((record, now, future))
                self._inflight_bytes += record.size
            self._wake_acker.set()
            await asyncio.sleep(0)  # acks between two groups of a catch-up

    async def _next_or_wait(self) -> list[SpooledRecord]:
        """The next group, or none after sleeping until a put (the spool was read to its end)
        or an ack (the window was full)."""
        if self._inflight_bytes < self.window_bytes:
            self._idle = True  # from here a put wakes us: set before looking, so none is missed
            group = self._next_group()
            if group:
                self._idle = False
                return group
        self._wake_sender.clear()  # a wake from a put or an ack runs after we suspend
        await self._wake_sender.wait()
        self._idle = False
        await asyncio.sleep(LINGER_S)  # puts meanwhile wake no one and join the next group
        return []

    def _next_group(self) -> list[SpooledRecord]:
        """The next records to hand over: as many as the window has room for, at most
        ``GROUP_RECORDS``, in spool order."""
        group: list[SpooledRecord] = []
        room = self.window_bytes - self._inflight_bytes
        while room > 0 and len(group) < GROUP_RECORDS:
            record = self.spool.read_next()
            if record is None:
                break
            group.append(record)
            room -= record.size
        return group

    async def _ack_loop(self) -> None:
        while True:
            if not self._inflight:
                self._wake_acker.clear()
                await self._wake_acker.wait()
                continue
            record, _, future = self._inflight[0]
            refused: EventLogError | None = None
            if not future.done() or future.cancelled() or future.exception() is not None:
                try:
                    with kafka_errors(f"{record.topic} seq {record.seq}"):
                        await asyncio.shield(future)
                except EventLogError as e:
                    if not e.retriable:
                        refused = e
                    elif self._rewind_to is None:
                        log.warning("Kafka gave up on seq %d (%r); resending from it",
                                    record.seq, e)  # fmt: skip
                        self._rewind_to = record.seq
            self._inflight.popleft()
            self._inflight_bytes -= record.size
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
