"""The Faust wiring: topics, the calls table, one agent, one timer. Faust only moves events.

Pitfalls designed around:
- A timer cannot write a table (no current event, so no changelog partition). The timer sends a
  tick to every partition of the worker's own tick topic; the agent consumes it co-partitioned
  with lifecycle and audio, so partition p's tick reaches the owner of partition p's calls.
- ``table[key] = value`` takes the changelog partition from the *current* event; in a batch
  (``take_events``) that is the batch's last event, maybe another partition. The processor
  writes ``table.data`` and sends the changelog with the call's own partition explicitly.
- Iterating a table sees only this worker's partitions: that is what the metrics want (each
  worker reports its partitions; the dashboard sums).
- Keys written during processing are not dropped from the memory store when their partition
  goes to another worker (only recovered ones are); the processor drops them itself on the new
  assignment, or a stale call could be ticked and republished over a newer snapshot. Not on
  the revoke signal: Faust revokes everything at each rebalance but does not re-read the
  tables of the partitions it gets back.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from faust.types import TP

from callrec.avro import codec
from callrec.avro.events import CallRecord, DeadLetter, Event
from callrec.avro.topics import AUDIO, CALLS, DEADLETTER, LIFECYCLE, METRICS
from callrec.eventlog import EVENT_TYPE_HEADER
from callrec.streams.processor import CallProcessor, Incoming
from callrec.streams.recorder_feed import RecorderBoard, follow_recorders
from callrec.streams.settings import StreamsSettings

log = logging.getLogger(__name__)
CALL_TOPICS = (LIFECYCLE.name, AUDIO.name)
RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes,
                       "key_serializer": "raw", "value_serializer": "raw"}


def wall_clock_us() -> int:
    return time.time_ns() // 1000


class FaustEmitter:
    """Sends through the Faust producer, which Faust flushes before it commits offsets."""

    def __init__(self, app: faust.App, table: Any) -> None:
        self.table = table
        self.calls = app.topic(CALLS.name, **RAW)
        self.dead = app.topic(DEADLETTER.name, **RAW)
        self.metrics = app.topic(METRICS.name, **RAW)

    def snapshot(self, partition: int, record: CallRecord) -> None:
        self._send(self.calls, record, partition)

    def dead_letter(self, letter: DeadLetter) -> None:
        self._send(self.dead, letter, None)

    def metric(self, sample: Event) -> None:
        self._send(self.metrics, sample, None)

    def changelog(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.table.send_changelog(partition, key, value, key_serializer="raw",
                                  value_serializer="raw")

    @staticmethod
    def _send(topic: Any, event: Event, partition: int | None) -> None:
        topic.send_soon(key=event.kafka_key, value=codec.encode(event), partition=partition,
                        headers=[(EVENT_TYPE_HEADER, type(event).__name__.encode())])


async def drain_producer_buffer(app: faust.App) -> None:
    """Hand every buffered send to the Kafka client before this batch counts as processed.

    faust's ``ProducerBuffer.flush`` gives up after 100 ms without a send (a busy machine), and
    the consumer commits right after it: the committed offset could then pass changelog records
    still in the buffer, and a kill -9 would lose them (seen in the failover test under load).
    """
    buffer = app.producer.buffer
    while buffer.size:
        await buffer.flush()


def build_app(
    settings: StreamsSettings, clock: Callable[[], int] = wall_clock_us
) -> tuple[faust.App, CallProcessor]:
    """The worker's Faust app and the processor it feeds."""
    app = faust.App(
        settings.streams_app_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        store="memory://",
        datadir=str(settings.streams_data_dir),
        web_enabled=False,
        topic_partitions=settings.streams_partitions,
        topic_replication_factor=settings.streams_replication,
        broker_session_timeout=settings.streams_session_timeout_s,
        broker_heartbeat_interval=settings.streams_heartbeat_interval_s,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=0.005,  # batch the changelog and snapshot sends of a fold batch
        table_standby_replicas=0,
        key_serializer="raw",
        value_serializer="raw",
    )
    table = app.Table("calls", partitions=settings.streams_partitions, key_type=bytes,
                      value_type=bytes)
    emitter = FaustEmitter(app, table)
    board = RecorderBoard()
    processor = CallProcessor(
        worker_id=settings.streams_worker_id,
        rules=settings.rules(),
        table=table.data,
        emitter=emitter,
        recorders=board,
        clock=clock,
        metrics_window_s=settings.streams_metrics_window_s,
    )
    source_names = (LIFECYCLE.name, AUDIO.name, settings.tick_topic)
    source = app.topic(*source_names, **RAW)
    ticks = app.topic(settings.tick_topic, **RAW)

    @app.agent(source)
    async def fold_calls(stream: Any) -> None:
        batches = stream.take_events(settings.streams_batch_max,
                                     within=settings.streams_batch_within_s)
        async for events in batches:
            processor.fold_batch(
                [Incoming(e.message.topic, e.message.partition, e.message.offset,
                          e.message.key, e.message.value, int(e.message.timestamp * 1e6))
                 for e in events],
                tick_topic=settings.tick_topic,
                highwaters=highwaters,
            )
            await drain_producer_buffer(app)

    @app.timer(interval=settings.streams_tick_s)  # type: ignore[untyped-decorator]
    async def tick_and_report() -> None:
        now = clock()
        for partition in range(settings.streams_partitions):
            ticks.send_soon(key=b"tick", value=str(now).encode(), partition=partition)
        for sample in processor.metrics_due():
            emitter.metric(sample)
        write_health(settings, app, processor, board, now)

    @app.task  # type: ignore[untyped-decorator]
    async def recorder_feed() -> None:
        await follow_recorders(settings.kafka_bootstrap, board,
                               settings.streams_recorder_lookback_s)

    def highwaters(partition: int) -> dict[str, int | None]:
        marks: dict[str, int | None] = {}
        for topic in CALL_TOPICS:
            try:
                marks[topic] = app.consumer.highwater(TP(topic, partition))
            except Exception:  # not assigned (any more), or no fetch answered yet
                marks[topic] = None
        return marks

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def forget_others(sender: Any, assigned: Any, **kwargs: Any) -> None:
        processor.partitions_assigned({tp.partition for tp in assigned
                                       if tp.topic in source_names})
        calls = [(tp.topic, tp.partition) for tp in assigned if tp.topic in CALL_TOPICS]
        try:
            processor.start_positions(
                await committed_positions(settings.kafka_bootstrap, app.conf.id, calls))
        except Exception as e:  # the time rules of these partitions wait for their first fold
            log.warning("could not read the group's committed offsets: %s", e)

    return app, processor


async def committed_positions(
    bootstrap: str, group: str, partitions: list[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """Where the group resumes each partition: its committed offset, else the start (0)."""
    if not partitions:
        return {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(
            group, partitions=[TopicPartition(t, p) for t, p in partitions])
    finally:
        await admin.close()
    positions = {where: 0 for where in partitions}
    for tp, meta in committed.items():
        if meta.offset >= 0:
            positions[(tp.topic, tp.partition)] = meta.offset
    return positions


def write_health(
    settings: StreamsSettings, app: faust.App, processor: CallProcessor,
    board: RecorderBoard, now: int,
) -> None:
    """The health file the stack polls: fresh ``at_us`` means the worker's loop is turning."""
    try:
        assigned = sorted({tp.partition for tp in app.consumer.assignment()
                           if tp.topic == LIFECYCLE.name})
    except Exception:  # the consumer is not started yet or rebalancing
        assigned = []
    health = {
        "worker_id": settings.streams_worker_id,
        "pid": os.getpid(),
        "at_us": now,
        "assigned_partitions": assigned,
        "recorders_ready": board.view.ready,
        "recorders_known": len(board.view.seen),
        "calls_in_memory": len(processor.states),
        "events_folded": processor.folded,
        "events_rejected": processor.rejected,
        "ticks_deferred": processor.ticks_deferred,
    }
    path = settings.health_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(health))
    tmp.replace(path)
