"""The outbox against the real broker with a spool many windows long (a recorder catching up
after Kafka was away): every record reaches Kafka once, in order per key, the spool is empty
after, and no more than the window was ever handed to Kafka unacknowledged."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from callrec.avro import codec
from callrec.avro.events import LegEnded, LegEndReason
from callrec.avro.topics import LIFECYCLE
from callrec.eventlog import EventPublisher, read_to_end, reader, topic_partitions
from callrec.infra.kafka import KafkaBroker
from callrec.producers.outbox import Outbox
from callrec.producers.spool import Spool

KEYS = 7
RECORDS = 2100
WINDOW_BYTES = 16 * 1024


def ended(call_key: str, n: int) -> LegEnded:
    return LegEnded(producer_id="outbox-window-test", call_key=call_key, leg="NEAR_END",
                    leg_id=str(n), reason=LegEndReason.BYE, packets_received=n, packets_lost=0,
                    payload_bytes=160, chunk_count=1)  # fmt: skip


async def test_a_backlog_many_windows_long_reaches_kafka_once_in_order_per_key(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    keys = [f"OutboxWindow:{run}:{k}" for k in range(KEYS)]
    spool = Spool(tmp_path / "spool", 64 * 1024**2)
    outbox = Outbox(spool, lambda: EventPublisher(kafka.bootstrap, "outbox-window-test",
                                                  max_batch_size=4096),
                    window_bytes=WINDOW_BYTES)  # fmt: skip
    for n in range(RECORDS):
        outbox.put(ended(keys[n % KEYS], n))
    largest = max(len(codec.encode(ended(keys[0], RECORDS))) + 256, 1)
    assert outbox.backlog * largest > 20 * WINDOW_BYTES  # the spool is many windows long
    most_in_flight = 0
    outbox.start()
    try:
        async with asyncio.timeout(60):
            while outbox.backlog:
                most_in_flight = max(most_in_flight, outbox.in_flight_bytes)
                await asyncio.sleep(0)
    finally:
        await outbox.close()
    assert 0 < most_in_flight <= WINDOW_BYTES + largest
    assert outbox.published == RECORDS and spool.pending_bytes == 0

    tps = await topic_partitions(kafka.bootstrap, [LIFECYCLE.name])
    seen: dict[str, list[int]] = {key: [] for key in keys}
    async with reader(kafka.bootstrap, f"outbox-window-{run}") as consumer:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        async for record in read_to_end(consumer, tps):
            key = (record.key or b"").decode()
            if key in seen:
                event = codec.decode(record.value or b"")
                assert isinstance(event, LegEnded)
                seen[key].append(int(event.leg_id))
    assert seen == {key: list(range(k, RECORDS, KEYS)) for k, key in enumerate(keys)}
