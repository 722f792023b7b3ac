"""The worker's Kafka loop: one consumer group, one producer, the calls table with its changelog.

A plain aiokafka consumer group replaces faust-streaming, the issue's first choice. Measured
here, Faust folded about 3,200 events/s per worker (its own per-message work was ~4x the fold)
and, about once in 12 failover runs, stopped consuming the partitions it had just taken over
("Worker ready", ticks going on, nothing folded for 54 s: faust-streaming #629/#175). Owning the
loop keeps what Faust gave (consumer group, changelog-backed table, recovery on takeover) and
makes each step's order explicit:

1. fold batches (``CallProcessor``, pure apart from its emitter);
2. every ``commit_interval_s``: write each changed call to the changelog once, flush the outbox
   (changelog, snapshots, dead letters) until Kafka acknowledged all of it;
3. then commit the offsets folded so far.

A kill -9 anywhere loses nothing: what was not committed is folded again by the next owner, and
folding is idempotent. On a rebalance the revoke waits for the batch in flight; newly gained
partitions are recovered from the changelog before any of their records is folded.

The range assignor keeps the topics co-partitioned: lifecycle, audio and tick partition p go to
the same worker, which owns the calls of partition p.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import IllegalStateError

from callrec.avro.topics import AUDIO, LIFECYCLE
from callrec.eventlog import (
    PRODUCER_SPENT,
    EventLogError,
    kafka_errors,
    new_consumer,
    new_producer,
)
from callrec.health import write_health as write_record
from callrec.streams.changelog import end_offsets, recover
from callrec.streams.processor import CallProcessor
from callrec.streams.recorder_feed import RecorderBoard, follow_recorders
from callrec.streams.send_queue import SendQueue
from callrec.streams.settings import StreamsSettings

log = logging.getLogger(__name__)
CALL_TOPICS = (LIFECYCLE.name, AUDIO.name)
START_RETRY_S = 2.0
FREEZE_CHECK_S = 0.25
Client = TypeVar("Client", AIOKafkaProducer, AIOKafkaConsumer)


def wall_clock_us() -> int:
    return time.time_ns() // 1000


async def started(make: Callable[[], Client]) -> Client:
    """A started Kafka client from ``make``; while Kafka is away, reported and tried again."""
    while True:
        client = make()
        try:
            with kafka_errors("connect"):
                await client.start()
            return client
        except EventLogError as e:
            log.warning("Kafka unavailable (%s); retrying in %.0f s", e, START_RETRY_S)
            await client.stop()
            await asyncio.sleep(START_RETRY_S)


class CallStateWorker:
    """One member of the call-state consumer group."""

    def __init__(self, settings: StreamsSettings,
                 clock: Callable[[], int] = wall_clock_us) -> None:
        self.settings = settings
        self.clock = clock
        self.board = RecorderBoard()
        self.outbox = SendQueue(settings.changelog_topic, producer_id=settings.streams_worker_id)
        self.processor = CallProcessor(
            worker_id=settings.streams_worker_id,
            rules=settings.rules(),
            emitter=self.outbox,
            recorders=self.board,
            clock=clock,
            metrics_window_s=settings.streams_metrics_window_s,
        )
        self.topics = (*CALL_TOPICS, settings.tick_topic)
        self.owned: set[int] = set()
        """Partitions whose records may be folded now (empty from a revoke to the assignment)."""
        self.held: set[int] = set()
        """Partitions whose calls the processor holds (kept across a rebalance that returns
        them)."""
        self.batch_lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        self.uncommitted: dict[TopicPartition, int] = {}
        """Next offset per partition folded since the last commit."""
        self.commit_interval_us = int(settings.streams_commit_interval_s * 1e6)
        self.committed_at = clock()
        self.turned_at = clock()
        """When the fold loop last came back from Kafka: the health file's liveness."""
        self.alive_at = time.monotonic()
        """When the event loop last ran our code (see ``_check_frozen``)."""
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self._renewing = asyncio.Lock()

    # --- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until ``stop()``: join the group, fold, tick; Kafka outages are reported and retried."""
        self.producer, self.consumer = await self._connect()
        self.alive_at = time.monotonic()
        side_tasks = [asyncio.create_task(self._tick_forever()),
                      asyncio.create_task(self._watch_for_freeze()),
                      asyncio.create_task(follow_recorders(
                          self.settings.kafka_bootstrap, self.board,
                          self.settings.streams_recorder_lookback_s))]
        try:
            self.consumer.subscribe(self.topics, listener=Rebalance(self))
            while not self.stopping.is_set():
                batches = await self.consumer.getmany(
                    timeout_ms=int(self.settings.streams_batch_within_s * 1000) or 1,
                    max_records=self.settings.streams_batch_max)
                self.turned_at = self.clock()
                async with self.batch_lock:
                    await self._fold(batches)
            async with self.batch_lock:
                await self._commit()
        finally:
            for task in side_tasks:
                task.cancel()
            await asyncio.gather(*side_tasks, return_exceptions=True)
            await self.consumer.stop()  # leaves the group: the others take over at once
            await self.producer.stop()

    def stop(self) -> None:
        self.stopping.set()

    async def _connect(self) -> tuple[AIOKafkaProducer, AIOKafkaConsumer]:
        s = self.settings
        consumer = await started(lambda: new_consumer(
            s.kafka_bootstrap, s.streams_worker_id,
            group_id=s.streams_app_id,
            auto_offset_reset="earliest", max_poll_records=s.streams_batch_max,
            fetch_max_wait_ms=int(s.streams_batch_within_s * 1000),
            fetch_min_bytes=s.streams_fetch_min_bytes,
            session_timeout_ms=int(s.streams_session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.streams_heartbeat_interval_s * 1000),
            partition_assignment_strategy=(RangePartitionAssignor,)))
        return await started(self._producer), consumer

    def _producer(self) -> AIOKafkaProducer:
        return new_producer(self.settings.kafka_bootstrap, self.settings.streams_worker_id)

    async def _renew_producer(self, spent: AIOKafkaProducer) -> AIOKafkaProducer:
        """Replace ``spent``, a producer that can no longer send (see eventlog.PRODUCER_SPENT),
        unless that happened already. What it may have written already is written again: the
        worker's outputs are idempotent."""
        async with self._renewing:
            if self.producer is not spent and self.producer is not None:
                return self.producer  # the tick loop and the flush both saw it; renewed once
            log.warning("replacing the producer: it can no longer send")
            await spent.stop()
            self.producer = await started(self._producer)
            return self.producer

    def _current_producer(self) -> AIOKafkaProducer:
        assert self.producer is not None
        return self.producer

    async def _fold(self, batches: dict[TopicPartition, list[Any]]) -> None:
        self._check_frozen()
        owned = {tp: records for tp, records in batches.items()
                 if tp.partition in self.owned and records}
        if owned:
            self.processor.fold_batch(
                [r for records in owned.values() for r in records],
                tick_topic=self.settings.tick_topic,
                highwaters=self._highwaters,
            )
            for tp, records in owned.items():
                self.uncommitted[tp] = records[-1].offset + 1
        if self.clock() - self.committed_at >= self.commit_interval_us:
            await self._commit()

    async def _commit(self) -> None:
        """Save the changed calls, wait until Kafka has every send, then commit the offsets."""
        assert self.producer is not None and self.consumer is not None
        self._check_frozen()
        self.processor.save()
        await self.outbox.flush(self._current_producer, self._renew_producer)
        offsets, self.uncommitted = self.uncommitted, {}
        self.committed_at = self.clock()
        if not offsets:
            return
        try:
            with kafka_errors("commit"):
                await self.consumer.commit(offsets)
        except EventLogError as e:
            # A rebalance took over (the next owner folds these records again: idempotent), or
            # the broker is away (the next commit covers them).
            log.info("offsets not committed: %s", e)

    def _highwaters(self, partition: int) -> dict[str, int | None]:
        assert self.consumer is not None
        marks: dict[str, int | None] = {}
        for topic in CALL_TOPICS:
            try:
                marks[topic] = self.consumer.highwater(TopicPartition(topic, partition))
            except IllegalStateError:  # not assigned (any more)
                marks[topic] = None
        return marks

    async def _tick_forever(self) -> None:
        """Ticks go through Kafka so that each reaches its partition's owner in order with the
        partition's records; metrics and the health file ride on the same period. A lost tick
        is harmless (the next one comes a second later); metrics wait in the outbox."""
        last: list[asyncio.Future[Any]] = []
        sender = self._current_producer()
        while True:
            await asyncio.sleep(self.settings.streams_tick_s)
            if any(spent_producer(sent) for sent in last):
                await self._renew_producer(sender)
            now = self.clock()
            last, sender = [], self._current_producer()
            try:
                with kafka_errors("tick"):
                    for partition in range(self.settings.streams_partitions):
                        sent = await sender.send(
                            self.settings.tick_topic, str(now).encode(), key=b"tick",
                            partition=partition)
                        sent.add_done_callback(report_lost_tick)
                        last.append(sent)
            except EventLogError as e:
                log.warning("tick not sent: %s", e)
            for sample in self.processor.metrics_due():
                self.outbox.metric(sample)
            write_health(self.settings, self)

    async def _watch_for_freeze(self) -> None:
        while True:
            await asyncio.sleep(FREEZE_CHECK_S)
            self._check_frozen()

    def _check_frozen(self) -> None:
        """A worker whose event loop stood still longer than the session timeout (SIGSTOP, a
        frozen VM) sent no heartbeat meanwhile, so the group has expelled it and another worker
        owns its partitions. It must not write what it folded before: it drops its unsent work
        and every call, and recovers them from the changelog when it is assigned partitions
        again. Kafka outages do not count: waiting on Kafka leaves the loop running."""
        now = time.monotonic()
        frozen_s, self.alive_at = now - self.alive_at, now
        if frozen_s <= self.settings.streams_session_timeout_s:
            return
        log.warning("the event loop stood still for %.1f s, past the group session timeout: "
                    "dropping %d unsent records and every call; they are recovered on the "
                    "next assignment", frozen_s, len(self.outbox.pending))
        self.outbox.pending = []
        self.uncommitted = {}
        self.processor.keep_only(())
        self.owned, self.held = set(), set()

    # --- rebalancing ---------------------------------------------------------------------------

    async def partitions_revoked(self) -> None:
        async with self.batch_lock:  # after the batch in flight: the next owner sees it all
            await self._commit()
            self.owned = set()

    async def partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Recover the calls of ``assigned`` before any of their records is folded. Kafka being
        away is retried here: aiokafka logs and forgets a listener's error, which would leave
        the worker owning partitions it never folds."""
        while True:
            try:
                await self._take(assigned)
                return
            except EventLogError as e:
                if self.stopping.is_set():
                    raise
                log.warning("cannot recover partitions yet (%s); retrying in %.0f s", e,
                            START_RETRY_S)
                await asyncio.sleep(START_RETRY_S)

    async def _take(self, assigned: set[TopicPartition]) -> None:
        partitions = {tp.partition for tp in assigned if tp.topic in self.topics}
        async with self.batch_lock:
            bootstrap, topic = self.settings.kafka_bootstrap, self.settings.changelog_topic
            kept = partitions & self.held
            ends = await end_offsets(bootstrap, topic, kept)
            written_by_others = {p for p in kept
                                 if ends[p] != self.outbox.changelog_ends.get(p, 0)}
            if written_by_others:
                log.warning("partitions %s were owned by another worker meanwhile: recovering "
                            "them", sorted(written_by_others))
            self.processor.keep_only(kept - written_by_others)
            recovered: dict[bytes, bytes] = {}
            self.outbox.changelog_ends.update(await recover(
                bootstrap, topic, (partitions - self.held) | written_by_others, recovered))
            self.processor.adopt(recovered)
            self.processor.start_positions(await self._committed(assigned))
            self.held, self.owned = set(partitions), set(partitions)

    async def _committed(self, assigned: set[TopicPartition]) -> dict[tuple[str, int], int]:
        """Where the group resumes each call partition: its committed offset, else 0."""
        assert self.consumer is not None
        positions: dict[tuple[str, int], int] = {}
        for tp in assigned:
            if tp.topic in CALL_TOPICS:
                try:
                    with kafka_errors(f"committed offset of {tp}"):
                        committed = await self.consumer.committed(tp)
                    positions[(tp.topic, tp.partition)] = committed or 0
                except EventLogError as e:  # the time rules of this partition wait for a fold
                    log.warning("committed offset of %s unknown: %s", tp, e)
        return positions


def report_lost_tick(sent: asyncio.Future[Any]) -> None:
    if not sent.cancelled() and sent.exception() is not None:
        log.warning("tick not sent: %s", sent.exception())


def spent_producer(sent: asyncio.Future[Any]) -> bool:
    """The send failed in a way only a new producer gets past (eventlog.PRODUCER_SPENT)."""
    return (sent.done() and not sent.cancelled() and sent.exception() is not None
            and isinstance(sent.exception(), PRODUCER_SPENT))


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: CallStateWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.worker.partitions_revoked()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.worker.partitions_assigned(assigned)


def write_health(settings: StreamsSettings, worker: CallStateWorker) -> None:
    """The health record the stack polls: a fresh ``at`` means the fold loop is turning (it
    comes back from Kafka every ``batch_within_s`` even with nothing to fold)."""
    processor = worker.processor
    write_record(
        settings.health_file, "streams", "running", at=worker.turned_at / 1e6,
        worker_id=settings.streams_worker_id,
        assigned_partitions=sorted(worker.owned),
        recorders_ready=worker.board.view.ready,
        recorders_known=len(worker.board.view.seen),
        calls_in_memory=len(processor.states),
        events_folded=processor.folded,
        events_rejected=processor.rejected,
        sends_refused=worker.outbox.refused,
        ticks_deferred=processor.ticks_deferred,
    )
