"""Every worker reads ALL of rec.recorders.v1 itself, outside the consumer group.

Heartbeats are keyed by recorder id, so the group would hand each recorder's heartbeats to one
worker while that recorder's calls live on every worker. A plain assigned consumer that starts
``lookback`` seconds back needs no changelog: liveness only looks at recent heartbeats.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from callrec.avro import codec
from callrec.avro.errors import ContractError
from callrec.avro.events import RecorderHeartbeat
from callrec.avro.topics import RECORDERS
from callrec.eventlog import EventLogError, kafka_errors, reader, seek_to_time, topic_partitions
from callrec.streams.recorders import RecordersView, mark_read_until, mark_ready, observe

log = logging.getLogger(__name__)
READ_GAP_US = 3_000_000
"""Fetches answer at least every 0.5 s (long poll); a longer gap means the broker was away."""


class RecorderBoard:
    """The latest RecordersView, replaced as heartbeats arrive; read by the ticks."""

    def __init__(self) -> None:
        self.view = RecordersView()

    def __call__(self) -> RecordersView:
        return self.view


async def follow_recorders(
    bootstrap: str, board: RecorderBoard, lookback_s: float, retry_s: float = 2.0
) -> None:
    """Keep ``board`` up to date forever; Kafka outages are logged and retried."""
    while True:
        try:
            async with reader(bootstrap, "callrec-streams-recorders") as consumer:
                tps = await topic_partitions(bootstrap, (RECORDERS.name,))
                with kafka_errors("recorder feed"):
                    await _follow(consumer, tps, board, lookback_s)
        except EventLogError as e:
            log.warning("recorder feed: Kafka unavailable (%s); retrying in %.0f s", e, retry_s)
        await asyncio.sleep(retry_s)


async def _follow(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], board: RecorderBoard, lookback_s: float
) -> None:
    consumer.assign(tps)
    ends = await seek_to_time(consumer, tps, int((time.time() - lookback_s) * 1000))
    pending = {tp for tp in tps if consumer_position_behind(await consumer.position(tp), ends[tp])}
    if not pending:
        board.view = mark_ready(board.view)
    stretch_start: int | None = None
    last_read_until = 0
    while True:
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for record in records:
                try:
                    event = codec.decode(record.value or b"")
                except ContractError as e:
                    log.warning("recorder feed: skipping undecodable heartbeat: %s", e)
                    continue
                if isinstance(event, RecorderHeartbeat):
                    board.view = observe(board.view, event)
        read_until = await complete_until(consumer, tps)
        if read_until is not None:
            if stretch_start is None or read_until - last_read_until > READ_GAP_US:
                stretch_start = read_until  # first read, or reading again after an outage
            last_read_until = read_until
            board.view = mark_read_until(board.view, read_until, stretch_start)
        if pending:
            for tp in list(pending):
                if not consumer_position_behind(await consumer.position(tp), ends[tp]):
                    pending.discard(tp)
            if not pending:
                log.info("recorder feed caught up: %d recorders known", len(board.view.seen))
                board.view = mark_ready(board.view)


async def complete_until(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> int | None:
    """When the broker last told us each partition's end and we had read up to it: every
    heartbeat appended before then is folded. None while behind or never answered."""
    times = []
    for tp in tps:
        highwater, polled_ms = consumer.highwater(tp), consumer.last_poll_timestamp(tp)
        if highwater is None or not polled_ms or consumer_position_behind(
                await consumer.position(tp), highwater):
            return None
        times.append(polled_ms * 1000)
    return min(times) if times else None


def consumer_position_behind(position: int, end: int) -> bool:
    return position < end
