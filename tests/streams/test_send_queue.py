"""The worker's send queue against a real broker: what it holds reaches Kafka even when the
producer it started with is replaced under it (seen in CI: after a broker outage the tick loop
renewed a spent producer while a flush was retrying, and the flush kept retrying on the stopped
one until the test gave up, so no call was ever published again)."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer, TopicPartition

from callrec.eventlog import new_producer, read_to_end, reader
from callrec.infra.kafka import KafkaBroker
from callrec.infra.topics import ensure_topics
from callrec.streams.changelog import changelog_spec
from callrec.streams.send_queue import SendQueue


async def test_a_flush_on_a_producer_replaced_under_it_still_delivers(
    kafka: KafkaBroker,
) -> None:
    topic = f"send-queue-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka.bootstrap, 1, topics=(changelog_spec(topic),))
    queue = SendQueue(topic, retry_s=0.1)
    for n in range(5):
        queue.changelog(0, f"k{n}".encode(), f"v{n}".encode())
    stopped = new_producer(kafka.bootstrap, "send-queue-test-old")
    await stopped.start()
    await (await stopped.send(topic, b"first", key=b"k", partition=0))  # knows the topic
    await stopped.stop()  # what the tick loop did to it when it renewed the producer
    fresh = new_producer(kafka.bootstrap, "send-queue-test-new")
    await fresh.start()
    current: list[AIOKafkaProducer] = [stopped]
    renewed_from: list[AIOKafkaProducer] = []

    async def renew(spent: AIOKafkaProducer) -> AIOKafkaProducer:
        renewed_from.append(spent)
        current[0] = fresh
        return fresh

    try:
        await asyncio.wait_for(queue.flush(lambda: current[0], renew), 30)
    finally:
        await fresh.stop()
    assert renewed_from == [stopped]
    assert queue.changelog_ends == {0: 6}
    tp = TopicPartition(topic, 0)
    async with reader(kafka.bootstrap, "send-queue-test-read") as consumer:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        got = [(r.key, r.value) async for r in read_to_end(consumer, [tp])]
    assert got[1:] == [(f"k{n}".encode(), f"v{n}".encode()) for n in range(5)]
