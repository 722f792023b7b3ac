"""The mixer worker: audio and call snapshots in, one archived recording per ended call out.

One consumer in group ``mixer_group_id`` reads rec.audio.v1 and rec.calls.v1 with the range
assignor, so partition N of both topics (the same call keys) always goes to the same worker.
Open calls' chunks wait in the spool; a call whose CallRecord is terminal is mixed once every
chunk the record counts has arrived (or after a short wait for stragglers), stored, announced on
rec.recordings.v1, and only then allowed to release its offsets (see offsets.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from callrec.avro.errors import ContractError
from callrec.avro.events import CallRecord, Event
from callrec.avro.topics import AUDIO, CALLS
from callrec.errors import RetriableError
from callrec.eventlog import EventLogError, EventPublisher, kafka_errors, new_consumer
from callrec.sinks.archive import Archiver
from callrec.sinks.archived import load_archived
from callrec.sinks.calls import TERMINAL, Archived, Next, OpenCall, reopens
from callrec.sinks.chunk_spool import ChunkSpool
from callrec.sinks.chunk_wire import WireChunk, read_chunks, take_in
from callrec.sinks.errors import ChunkSpoolFull
from callrec.sinks.health import HealthReport
from callrec.sinks.offsets import PartitionLedger
from callrec.sinks.reread import reread_audio
from callrec.sinks.settings import MixerSettings

log = logging.getLogger(__name__)
RETRY_FAILED_MIX_S = 30.0


class MixerWorker:
    def __init__(
        self, settings: MixerSettings, publisher: EventPublisher, archiver: Archiver
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.archiver = archiver
        self.spool = ChunkSpool(
            settings.mixer_spool_dir,
            settings.mixer_spool_memory_mb * 1024 * 1024,
            settings.mixer_spool_disk_mb * 1024 * 1024,
        )
        self.calls: dict[str, OpenCall] = {}
        self.ledgers: dict[int, PartitionLedger] = {}
        self.archived: dict[int, dict[str, Archived]] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.health = HealthReport(settings.mixer_health_file)
        self._mixing = asyncio.Semaphore(settings.mixer_concurrency)
        self._clusters = settings.clusters  # asked per chunk: parsed once
        self._assigned = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then finish the calls being archived and commit."""
        consumer = new_consumer(
            self.settings.kafka_bootstrap,
            self.settings.mixer_producer_id,
            group_id=self.settings.mixer_group_id,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=self.settings.mixer_session_timeout_ms,
            heartbeat_interval_ms=max(1000, self.settings.mixer_session_timeout_ms // 4),
            max_poll_interval_ms=300_000,
            # Fewer, fuller fetches: each costs the worker a request and its answer's parsing
            # whatever it holds, and a batch of chunks is read as one table (chunk_wire).
            fetch_min_bytes=self.settings.mixer_fetch_min_bytes,
            fetch_max_wait_ms=self.settings.mixer_fetch_max_wait_ms,
        )
        self._consumer = consumer
        consumer.subscribe([AUDIO.name, CALLS.name], listener=_Rebalance(self))
        await consumer.start()
        last_commit = 0.0
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                reads = _read_audio(batches)
                for tp, records in batches.items():
                    await self._consume(consumer, tp, records, reads.get(tp))
                self._resume_if_room(consumer)
                await self._start_ready_calls(consumer)
                if time.monotonic() - last_commit >= self.settings.mixer_commit_interval_s:
                    await self._commit(consumer)
                    self._report(consumer)
                    last_commit = time.monotonic()
            log.info("stopping: finishing %d call(s) being archived", self._busy())
            await self._drain(list(self.calls.values()))
            await self._commit(consumer)
        finally:
            self.health.write({"state": "stopped"})
            await consumer.stop()

    # --- consuming -----------------------------------------------------------------------------

    async def _consume(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: Any,
        reads: list[WireChunk | None] | None,
    ) -> None:
        """``reads``: what ``_read_audio`` made of the records, None for a topic it skips."""
        # aiokafka may hand out records before the assignment callback (which loads the archived
        # calls) has finished: wait for it, or a replay would archive a call a second time.
        await self._assigned.wait()
        ledger = self.ledgers.setdefault(tp.partition, PartitionLedger())
        for record, read in zip(records, reads or [None] * len(records), strict=True):
            try:
                event = take_in(record.value or b"", read)
            except ContractError as e:
                await self._dead_letter(record, e)
                self._passed(ledger, tp.topic, record.offset)
                continue
            try:
                kept = self._take(tp, record.offset, record.value, event, ledger)
            except ChunkSpoolFull as e:
                log.warning("%s; pausing %s at offset %d", e, tp, record.offset)
                consumer.seek(tp, record.offset)
                consumer.pause(tp)
                return
            if kept is None:
                name = "AudioChunk" if isinstance(event, WireChunk) else type(event).__name__
                misplaced = ContractError(f"{name} does not belong on {tp.topic}")
                await self._dead_letter(record, misplaced)
            if not kept:
                self._passed(ledger, tp.topic, record.offset)

    async def _dead_letter(self, record: Any, error: Exception) -> None:
        await self.archiver.retrying(
            f"dead letter of {record.topic}/{record.partition}@{record.offset}",
            functools.partial(self.publisher.dead_letter, record, error),
        )

    def _take(
        self, tp: TopicPartition, offset: int, value: bytes, event: Event | WireChunk,
        ledger: PartitionLedger,
    ) -> bool | None:
        """Keep an event of an open call; False when it needs nothing, None when misplaced."""
        if tp.topic == AUDIO.name and isinstance(event, WireChunk):
            call = self._call_for(event.call_key, tp.partition)
            chunk = event.packets
            if call is None or (chunk.leg_id, chunk.chunk_seq) in call.chunks:
                return False
            self.spool.add(call.key, offset, value, chunk)
            call.chunks.add((chunk.leg_id, chunk.chunk_seq))
            ledger.saw_chunk(call.key, offset)
            return True
        if tp.topic == CALLS.name and isinstance(event, CallRecord):
            if event.call_key not in self.calls and self._expired(event):
                return False
            archived = self.archived.get(tp.partition, {}).get(event.call_key)
            if archived is not None:
                if not reopens(archived, event):
                    return False
                del self.archived[tp.partition][event.call_key]
                log.info("%s changed after its recording (call version %d -> %d): archiving a "
                         "new version", event.call_key, archived.call_version, event.version)
            call = self._call_for(event.call_key, tp.partition)
            if call is None:
                return False
            if archived is not None:
                call.previous, call.reread_pending = archived, True
            call.take_record(event, time.monotonic())
            # A reopened call's first audio lies behind the committed offset; it is re-read, so
            # the offset does not move back for it.
            same_partition = event.first_audio_partition == tp.partition
            ledger.saw_snapshot(
                call.key, offset,
                event.first_audio_offset if same_partition and call.previous is None else None,
            )
            return True
        return None

    def _expired(self, record: CallRecord) -> bool:
        """An ended call older than the audio kept in Kafka, met with none of its audio: a new
        group replaying the compacted calls topic must not archive such calls as silence."""
        if record.status not in TERMINAL or record.ended_at is None:
            return False
        age = datetime.now(UTC) - record.ended_at
        return bool(age > timedelta(days=self.settings.mixer_archived_lookback_days))

    def _call_for(self, call_key: str, partition: int) -> OpenCall | None:
        clusters = self._clusters
        if clusters and call_key.split(":", 1)[0] not in clusters:
            return None
        if call_key in self.archived.get(partition, {}):
            return None
        call = self.calls.get(call_key)
        if call is None:
            call = self.calls[call_key] = OpenCall(call_key, partition)
        return call

    @staticmethod
    def _passed(ledger: PartitionLedger, topic: str, offset: int) -> None:
        if topic == AUDIO.name:
            ledger.passed(audio_offset=offset)
        else:
            ledger.passed(calls_offset=offset)

    def _resume_if_room(self, consumer: AIOKafkaConsumer) -> None:
        paused = consumer.paused()
        if paused and self.spool.disk_bytes < self.spool.disk_budget * 0.9:
            consumer.resume(*paused)

    # --- archiving -----------------------------------------------------------------------------

    async def _start_ready_calls(self, consumer: AIOKafkaConsumer) -> None:
        """Mix each ended call that is ready (see calls.py), reading a reopened call's earlier
        audio back first."""
        now = time.monotonic()
        wait = self.settings.mixer_complete_wait_s
        for call in list(self.calls.values()):
            if call.task is not None or call.record is None or call.ended_at is None:
                continue
            caught_up = await self._audio_caught_up(consumer, call.partition)
            step = call.next_step(now, caught_up, wait)
            if step == Next.REREAD:
                call.task = asyncio.create_task(self._reread(consumer, call),
                                                name=f"reread {call.key}")
            elif step in (Next.MIX, Next.MIX_INCOMPLETE):
                if step == Next.MIX_INCOMPLETE:
                    log.warning("%s ended without all its chunks; archiving what there is",
                                call.key)
                call.task = asyncio.create_task(self._archive(call), name=f"archive {call.key}")

    async def _reread(self, consumer: AIOKafkaConsumer, call: OpenCall) -> None:
        """Spool the audio of a reopened call that the worker read before it was archived."""
        record = call.record
        assert record is not None
        try:
            if record.first_audio_offset is not None and (
                record.first_audio_partition == call.partition
            ):
                until: int = await consumer.position(TopicPartition(AUDIO.name, call.partition))
                found = await reread_audio(self.settings.kafka_bootstrap, call.partition,
                                           record.first_audio_offset, until, call.key)
                if found.expired:
                    log.error("%s: %d offsets of its audio are past rec.audio.v1's retention; "
                              "the new version lacks them (the one it supersedes keeps them)",
                              call.key, found.expired)
                for offset, value, chunk in found.chunks:
                    assert chunk is not None
                    if (chunk.leg_id, chunk.chunk_seq) not in call.chunks:
                        self.spool.add(call.key, offset, value, chunk)
                        call.chunks.add((chunk.leg_id, chunk.chunk_seq))
            call.reread_pending = False
        except (RetriableError, EventLogError) as e:  # a full spool is retriable too
            log.warning("re-reading %s failed (%s); trying again in %.0f s", call.key, e,
                        RETRY_FAILED_MIX_S)
            call.not_before = time.monotonic() + RETRY_FAILED_MIX_S
        finally:
            call.task = None

    async def _audio_caught_up(self, consumer: AIOKafkaConsumer, partition: int) -> bool:
        tp = TopicPartition(AUDIO.name, partition)
        if tp not in consumer.assignment() or tp in consumer.paused():
            return False
        highwater: int | None = consumer.highwater(tp)
        if highwater is None:
            return False
        position: int = await consumer.position(tp)
        return position >= highwater

    async def _archive(self, call: OpenCall) -> None:
        record = call.record
        assert record is not None
        try:
            entries = self.spool.stream(call.key)
            announced = await self.archiver.archive(
                record, entries, call.partition, self._mixing, call.previous
            )
        except asyncio.CancelledError:
            call.task = None
            raise
        except Exception:  # a bug or a bad chunk must not stop the worker's other calls
            log.exception("archiving %s failed; trying again in %.0f s", call.key,
                          RETRY_FAILED_MIX_S)
            call.task, call.not_before = None, time.monotonic() + RETRY_FAILED_MIX_S
            return
        self._close(call, Archived(announced.call_version, announced.version_id))

    def _close(self, call: OpenCall, archived: Archived) -> None:
        assert call.record is not None
        if call.record.version > archived.call_version:
            # A newer snapshot came while this one was mixed: mix again, superseding this one.
            call.previous, call.task = archived, None
            return
        self.archived.setdefault(call.partition, {})[call.key] = archived
        ledger = self.ledgers.get(call.partition)
        if ledger is not None:
            ledger.closed(call.key)
        self.spool.discard(call.key)
        self.calls.pop(call.key, None)

    async def _drain(self, calls: list[OpenCall]) -> None:
        tasks = [c.task for c in calls if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=60)

    def _busy(self) -> int:
        return sum(1 for c in self.calls.values() if c.task is not None)

    # --- offsets and rebalancing ---------------------------------------------------------------

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        offsets: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            ledger = self.ledgers.get(tp.partition)
            if ledger is None:
                continue
            offset = ledger.audio_commit() if tp.topic == AUDIO.name else ledger.calls_commit()
            if offset is not None and self.committed.get(tp) != offset:
                offsets[tp] = offset
        if not offsets:
            return
        try:
            with kafka_errors("commit"):
                await consumer.commit(offsets)
        except EventLogError as e:
            log.warning("offset commit failed (will retry): %s", e)
            return
        self.committed.update(offsets)

    async def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        numbers = {tp.partition for tp in revoked}
        leaving = [c for c in self.calls.values() if c.partition in numbers]
        await self._drain(leaving)
        if self._consumer is not None:
            await self._commit(self._consumer)
        for call in leaving:
            if call.task is not None and not call.task.done():
                call.task.cancel()
            self.spool.discard(call.key)
            self.calls.pop(call.key, None)
        for n in numbers:
            self.ledgers.pop(n, None)
            self.archived.pop(n, None)
        self.committed = {tp: o for tp, o in self.committed.items() if tp.partition not in numbers}

    async def partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        numbers = sorted({tp.partition for tp in assigned} - set(self.archived))
        if not numbers:
            self._assigned.set()
            return
        self._assigned.clear()
        lookback = timedelta(days=self.settings.mixer_archived_lookback_days)
        try:
            done = await load_archived(self.settings.kafka_bootstrap, numbers, lookback)
        except EventLogError as e:  # a replayed call is then stored once but announced again
            log.warning("could not read %s back: %s", "rec.recordings.v1", e)
            done = {}
        for n in numbers:
            self.archived[n] = done.get(n, {})
        self._assigned.set()
        log.info("assigned partitions %s (%d calls already archived)", numbers,
                 sum(len(v) for v in done.values()))

    def _report(self, consumer: AIOKafkaConsumer) -> None:
        self.health.write({
            "state": "running",
            "partitions": sorted({tp.partition for tp in consumer.assignment()}),
            "open_calls": len(self.calls),
            "archiving": self._busy(),
            "spool_memory_bytes": self.spool.memory_bytes,
            "spool_disk_bytes": self.spool.disk_bytes,
            "paused": len(consumer.paused()) > 0,
            "store_failing_since": self.archiver.failing_since,
        })


def _read_audio(batches: dict[TopicPartition, Any]) -> dict[TopicPartition, list[WireChunk | None]]:
    """Every audio record of a fetch, of every partition, read at once (chunk_wire: the more
    chunks in one table, the less each costs), straight to its packets' summary."""
    audio = [(tp, records) for tp, records in batches.items() if tp.topic == AUDIO.name]
    reads = read_chunks([r.value or b"" for _, records in audio for r in records])
    out: dict[TopicPartition, list[WireChunk | None]] = {}
    at = 0
    for tp, records in audio:
        out[tp] = reads[at:at + len(records)]
        at += len(records)
    return out


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: MixerWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.worker.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.worker.partitions_assigned(assigned)
