"""``EventPublisher.enqueue_many``, the outbox's way to Kafka, against the real broker: a record
lands on the partition ``send`` gives its key (consumers of the audio and lifecycle topics rely
on one call's events sharing a partition, whichever producer wrote them), in order, and one
larger than the producer takes fails alone as refused while the rest of its group lands."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from callrec.avro.topics import MAX_RECORD_BYTES, TopicSpec
from callrec.eventlog import (
    EventLogRefused,
    EventPublisher,
    kafka_errors,
    read_to_end,
    reader,
    topic_partitions,
)
from callrec.infra.kafka import KafkaBroker
from callrec.infra.topics import ensure_topics

KEYS = 40


async def test_records_land_where_send_puts_their_key_in_order_and_an_oversized_one_fails_alone(
    kafka: KafkaBroker,
) -> None:
    run = uuid.uuid4().hex[:8]
    first, second = f"batches-a-{run}", f"batches-b-{run}"
    await ensure_topics(kafka.bootstrap, 6, topics=(TopicSpec(first), TopicSpec(second)))
    keys = [f"Batches:{run}:{k}".encode() for k in range(KEYS)]
    publisher = EventPublisher(kafka.bootstrap, f"batches-{run}", max_batch_size=2048)
    await publisher.start()
    try:
        one_by_one = [await publisher.enqueue_encoded(first, key, b"send", "Raw")
                      for key in keys]  # fmt: skip
        records = [(first if n % 3 else second, keys[n % KEYS],
                    f"many:{n}".encode(), "Raw") for n in range(10 * KEYS)]  # fmt: skip
        records.insert(7, (first, keys[0], os.urandom(MAX_RECORD_BYTES + 1), "Raw"))
        many = await publisher.enqueue_many(records)
        assert len(many) == len(records)
        await asyncio.gather(*one_by_one, *(f for n, f in enumerate(many) if n != 7))
        with pytest.raises(EventLogRefused), kafka_errors("the oversized record"):
            await many[7]
    finally:
        await publisher.stop()

    where: dict[tuple[str, bytes], set[int]] = {}
    values: dict[tuple[str, bytes], list[bytes]] = {}
    tps = await topic_partitions(kafka.bootstrap, [first, second])
    async with reader(kafka.bootstrap, f"batches-{run}") as consumer:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        async for record in read_to_end(consumer, tps):
            if record.key in keys:
                where.setdefault((record.topic, record.key), set()).add(record.partition)
                values.setdefault((record.topic, record.key), []).append(record.value or b"")
    for key in keys:  # lifecycle: the record sent one by one and those sent many at once
        assert len(where[first, key]) == 1, "a key on two partitions"
    sent = records[:7] + records[8:]
    for topic, key in values:
        assert values[topic, key] == [b"send"] * (topic == first) + [
            v for t, k, v, _ in sent if (t, k) == (topic, key)]
