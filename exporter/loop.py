"""The exporter process: read the log into the state, poll group lag, serve /metrics.

One Kafka session = a group-less reader on the exporter's topics + an admin client for lag. When
Kafka fails (a broker restart) the session is dropped and rebuilt after a pause, and the reader
resumes at the offset after the last record it folded, so nothing is counted twice. /metrics is
served from prometheus-client's HTTP thread the whole time; its series say Kafka is down
(`callrec_exporter_kafka_up 0`) instead of vanishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.structs import TopicPartition
from prometheus_client import CollectorRegistry, start_http_server

from callrec.avro.topics import AUDIO, CALLS, METRICS, RECORDERS, RECORDINGS
from callrec.eventlog import EventLogError, EventPublisher, LogAdmin, kafka_errors, log_reader
from callrec.exporter.collector import SelfStats, StateCollector
from callrec.exporter.manifests import day_start_s, last_signed_day
from callrec.exporter.reader import DEAD_LETTERED, Read, route
from callrec.exporter.settings import ExporterSettings
from callrec.exporter.state import US, ExporterState
from callrec.sinks.errors import StoreUnavailable
from callrec.sinks.store import RecordingStore, connect

log = logging.getLogger(__name__)

FROM_START = (METRICS.name,)
FROM_LOOKBACK = (RECORDERS.name, CALLS.name, RECORDINGS.name)
FROM_END = (AUDIO.name,)


@dataclass
class Exporter:
    settings: ExporterSettings
    state: ExporterState = field(init=False)
    stats: SelfStats = field(default_factory=SelfStats)
    lock: threading.Lock = field(default_factory=threading.Lock)
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    """Next offset to read per partition: where a rebuilt session resumes."""

    def __post_init__(self) -> None:
        self.state = ExporterState(
            recorder_lost_after_s=self.settings.exporter_recorder_lost_after_s,
            forget_after_s=self.settings.exporter_forget_after_s)

    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StateCollector(self.state, self.stats, self.lock))
        return registry

    @property
    def topics(self) -> list[str]:
        from_end = FROM_END if self.settings.exporter_read_audio else ()
        return [*FROM_START, *FROM_LOOKBACK, *from_end]

    async def run(self, stopping: asyncio.Event) -> None:
        """Sessions until ``stopping`` is set; a failed one is logged and rebuilt."""
        while not stopping.is_set():
            try:
                with kafka_errors("exporter session"):
                    await self._session(stopping)
            except EventLogError as e:
                log.warning("Kafka unavailable (%s); reconnecting in %.1f s", e,
                            self.settings.exporter_retry_s)
            except Exception:
                # /metrics must outlive any one session: log the surprise, start a new one.
                log.exception("exporter session failed; starting a new one")
            self.stats.kafka_up = False
            if not stopping.is_set():
                await asyncio.sleep(self.settings.exporter_retry_s)

    async def _session(self, stopping: asyncio.Event) -> None:
        s = self.settings
        admin = LogAdmin(s.kafka_bootstrap, s.exporter_id)
        consumer = log_reader(s.kafka_bootstrap, s.exporter_id, fetch_max_wait_ms=100)
        publisher = EventPublisher(s.kafka_bootstrap, s.exporter_id)
        try:
            await admin.start()
            await consumer.start()
            await publisher.start()
            await self._place(consumer, await admin.partitions(self.topics))
            tasks = [asyncio.create_task(self._read(consumer, publisher)),
                     asyncio.create_task(self._poll_lag(admin)),
                     asyncio.create_task(stopping.wait())]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                task.result()
        finally:
            for close in (publisher.stop, consumer.stop, admin.stop):
                await _close_quietly(close)

    async def _place(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        """Resume where the last session stopped; else each topic at its start policy."""
        consumer.assign(tps)
        fresh = [tp for tp in tps if tp not in self.positions]
        since_ms = int((time.time() - self.settings.exporter_lookback_s) * 1000)
        lookback = [tp for tp in fresh if tp.topic in FROM_LOOKBACK]
        starts = await consumer.offsets_for_times({tp: since_ms for tp in lookback})
        ends = await consumer.end_offsets(fresh) if fresh else {}
        for tp in tps:
            if tp in self.positions:
                consumer.seek(tp, self.positions[tp])
            elif tp.topic in FROM_START:
                await consumer.seek_to_beginning(tp)
            elif tp.topic in FROM_LOOKBACK and starts.get(tp) is not None:
                consumer.seek(tp, starts[tp].offset)
            else:
                consumer.seek(tp, ends[tp])

    async def _read(self, consumer: AIOKafkaConsumer, publisher: EventPublisher) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            self.stats.kafka_up = True
            for tp, records in batches.items():
                for record in records:
                    await self._fold(record, publisher)
                    self.positions[tp] = record.offset + 1

    async def _fold(self, record: ConsumerRecord[bytes, bytes],
                    publisher: EventPublisher) -> None:
        read_at_us = int(time.time() * US)
        with self.lock:
            error = route(self.state, Read(record.topic, record.value or b""), read_at_us)
            self.stats.count_event(record.topic)
        if error is None:
            return
        log.warning("unusable record %s[%d]@%d: %s: %s", record.topic, record.partition,
                    record.offset, type(error).__name__, error)
        if record.topic in DEAD_LETTERED:
            # Awaited before the position moves on: a dead letter lost to a broker outage is
            # written again by the next session, which re-reads this record.
            await publisher.dead_letter(record, error)
        with self.lock:
            self.stats.count_rejected(record.topic, type(error).__name__)

    async def watch_manifests(self, stopping: asyncio.Event) -> None:
        """Every few minutes, which day last got its signed manifest (S3 settings given)."""
        s = self.settings
        if not (s.s3_access_key and s.s3_secret_key):
            return
        store = RecordingStore(connect(s.s3_endpoint, s.s3_access_key, s.s3_secret_key,
                                       s.s3_secure), s.s3_bucket)
        while not stopping.is_set():
            try:
                day = await asyncio.to_thread(last_signed_day,
                                              lambda key: store.find(key) is not None,
                                              datetime.now(UTC).date())
                with self.lock:
                    self.state.manifest_day_s = day_start_s(day) if day else 0.0
            except StoreUnavailable as e:
                log.warning("cannot check the signed manifests: %s", e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), s.exporter_manifest_check_s)

    async def _poll_lag(self, admin: LogAdmin) -> None:
        while True:
            lags = await admin.lags()
            with self.lock:
                self.state.lags = lags
                self.stats.lag_polled_at_us = int(time.time() * US)
                self.state.prune(self.stats.lag_polled_at_us)
            await asyncio.sleep(self.settings.exporter_lag_interval_s)


async def _close_quietly(close: Callable[[], Awaitable[None]]) -> None:
    """Close a Kafka client of a failed session. aiokafka's stop can raise what its own
    cancelled background tasks raised (even CancelledError); only our own cancellation counts."""
    try:
        await close()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.debug("a Kafka client raised CancelledError while closing")
    except Exception as e:
        log.debug("closing a Kafka client failed: %s", e)


async def serve(settings: ExporterSettings, stopping: asyncio.Event) -> None:
    """Serve /metrics and follow the log until ``stopping`` is set."""
    exporter = Exporter(settings)
    server, thread = start_http_server(settings.exporter_port, settings.exporter_host,
                                       registry=exporter.registry())
    log.info("serving http://%s:%d/metrics", settings.exporter_host, settings.exporter_port)
    try:
        await asyncio.gather(exporter.run(stopping), exporter.watch_manifests(stopping))
    finally:
        server.shutdown()
        thread.join(timeout=5)
