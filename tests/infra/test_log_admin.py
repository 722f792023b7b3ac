"""The event-log port's admin side against the real broker: a topic's partitions, and a consumer
group's lag counted exactly (end offset minus what the group committed)."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from callrec.avro.topics import TopicSpec
from callrec.eventlog import EventLogUnavailable, EventPublisher, LogAdmin
from callrec.infra.kafka import KafkaBroker
from callrec.infra.procs import free_port
from callrec.infra.topics import ensure_topics

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_groups_lag_is_what_it_has_not_committed(kafka: KafkaBroker) -> None:
    topic, group = f"lag-test-{uuid.uuid4().hex[:8]}", f"lag-test-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka.bootstrap, 2, topics=(TopicSpec(topic, call_keyed=False),))
    publisher = EventPublisher(kafka.bootstrap, "lag-test")
    await publisher.start()
    try:
        acks = [await (await publisher.enqueue_encoded(topic, b"k", b"v", "Raw"))
                for _ in range(7)]
    finally:
        await publisher.stop()
    partition = TopicPartition(topic, acks[0].partition)  # one key: one partition
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([partition])
        await consumer.commit({partition: OffsetAndMetadata(acks[2].offset, "")})
    finally:
        await consumer.stop()
    admin = LogAdmin(kafka.bootstrap, "lag-test")
    await admin.start()
    try:
        lags = await admin.lags()
        partitions = await admin.partitions([topic])
    finally:
        await admin.stop()
    assert lags[group, topic] == acks[-1].offset + 1 - acks[2].offset == 5
    assert partitions == [TopicPartition(topic, 0), TopicPartition(topic, 1)]


async def test_an_unreachable_broker_is_a_retriable_error() -> None:
    admin = LogAdmin(f"127.0.0.1:{free_port()}", "lag-test")
    with pytest.raises(EventLogUnavailable) as raised:
        await admin.start()
    assert raised.value.retriable
