"""The worker's send queue against a real broker: what it holds reaches Kafka even when the
producer it started with is replaced under it (seen in CI: after a broker outage the tick loop
renewed a spent producer while a flush was retrying, and the flush kept retrying on the stopped
one until the test gave up, so no call was ever published again)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid

from aiokafka import AIOKafkaProducer, TopicPartition

from callrec.avro import codec
from callrec.avro.events import DeadLetter
from callrec.avro.topics import DEADLETTER, MAX_RECORD_BYTES, TopicSpec
from callrec.eventlog import new_producer, read_to_end, reader, topic_partitions
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


async def test_sends_kafka_refuses_for_good_are_dead_lettered_and_the_rest_delivered_in_order(
    kafka: KafkaBroker,
) -> None:
    """One send above the producer's limit and one above the topic's: each becomes a small dead
    letter, once, and the flush delivers the others in their order instead of retrying the
    refused ones forever (as it did: every later snapshot and commit waited behind them)."""
    topic = f"send-queue-{uuid.uuid4().hex[:8]}"
    small_topic = TopicSpec(topic, {"max.message.bytes": str(100_000)})
    await ensure_topics(kafka.bootstrap, 1, topics=(small_topic,))
    queue = SendQueue(topic, retry_s=0.1, producer_id="send-queue-test")
    too_big_for_topic, too_big_for_producer = os.urandom(200_000), os.urandom(MAX_RECORD_BYTES)
    values = [b"v0", too_big_for_topic, b"v2", too_big_for_producer, b"v4"]
    for n, value in enumerate(values):
        queue.changelog(0, f"k{n}".encode(), value)
    current = [new_producer(kafka.bootstrap, "send-queue-test-refused")]
    await current[0].start()

    async def renew(spent: AIOKafkaProducer) -> AIOKafkaProducer:
        """As the worker does: the broker's refusal left a gap in the producer's sequence."""
        await spent.stop()
        current[0] = new_producer(kafka.bootstrap, "send-queue-test-refused")
        await current[0].start()
        return current[0]

    try:
        await asyncio.wait_for(queue.flush(lambda: current[0], renew), 60)
    finally:
        await current[0].stop()
    assert queue.refused == 2
    tp = TopicPartition(topic, 0)
    async with reader(kafka.bootstrap, "send-queue-test-read") as consumer:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        got = [(r.key, r.value) async for r in read_to_end(consumer, [tp])]
        dead_tps = await topic_partitions(kafka.bootstrap, [DEADLETTER.name])
        consumer.assign(dead_tps)
        await consumer.seek_to_beginning(*dead_tps)
        letters = [e async for r in read_to_end(consumer, dead_tps)
                   if isinstance(e := codec.decode(r.value or b""), DeadLetter)
                   and e.source_topic == topic]
    # The broker's refusal spent the producer: what followed is sent again, in order (k0 may
    # land twice), and nothing refused is ever written.
    assert list(dict.fromkeys(got)) == [(b"k0", b"v0"), (b"k2", b"v2"), (b"k4", b"v4")]
    assert got[-1] == (b"k4", b"v4") and queue.changelog_ends == {0: len(got)}
    by_key = {letter.source_key: letter for letter in letters}
    assert sorted(by_key) == [b"k1", b"k3"] and len(letters) == 2
    for key, value in ((b"k1", too_big_for_topic), (b"k3", too_big_for_producer)):
        letter = by_key[key]
        assert letter.payload_size == len(value) and letter.payload == value[:64 * 1024]
        assert letter.payload_sha256 == hashlib.sha256(value).hexdigest()
        assert (letter.error_type, letter.source_partition, letter.source_offset) == (
            "EventLogRefused", 0, -1)
