"""The event-log port's contract against the real broker: what it builds, how it names events,
how Kafka's errors come out of it, and reading partitions to their end."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
)

from callrec.avro.events import LegEnded, LegEndReason
from callrec.avro.topics import LIFECYCLE
from callrec.eventlog import (
    EVENT_TYPE_HEADER,
    EventLogRefused,
    EventLogUnavailable,
    EventPublisher,
    read_to_end,
    reader,
    topic_partitions,
    translated,
)
from callrec.infra.kafka import KafkaBroker
from callrec.infra.procs import free_port


def ended(call_key: str) -> LegEnded:
    return LegEnded(producer_id="port-test", call_key=call_key, leg="NEAR_END", leg_id="l1",
                    reason=LegEndReason.BYE, packets_received=1, packets_lost=0,
                    payload_bytes=160, chunk_count=1)


@pytest.mark.parametrize(
    ("error", "retriable"),
    [(KafkaConnectionError(), True), (KafkaTimeoutError(), True),
     (MessageSizeTooLargeError(), False)],
    ids=["broker away", "client timeout", "record too large"],
)
def test_kafka_errors_become_the_projects_with_retriable(error: Exception, retriable: bool
                                                         ) -> None:
    mine = translated(error, "send")  # type: ignore[arg-type]
    assert mine.retriable is retriable
    assert isinstance(mine, EventLogUnavailable if retriable else EventLogRefused)
    assert not mine.renew_producer


def test_a_producer_out_of_sequence_must_be_replaced() -> None:
    """After a broker outage an idempotent producer's batches may come back out of sequence;
    it never sends again, so the error says: retry, with a new producer."""
    mine = translated(OutOfOrderSequenceNumber(), "send")
    assert mine.retriable and mine.renew_producer


async def test_events_carry_their_avro_full_name_and_read_back_to_the_end(
    kafka: KafkaBroker
) -> None:
    keys = [f"Port:{uuid.uuid4().hex[:8]}" for _ in range(3)]
    publisher = EventPublisher(kafka.bootstrap, "port-test")
    await publisher.start()
    try:
        landed = [await publisher.publish(ended(key)) for key in keys]
    finally:
        await publisher.stop()
    tps = await topic_partitions(kafka.bootstrap, (LIFECYCLE.name,))
    assert len(tps) >= 1 and all(tp.topic == LIFECYCLE.name for tp in tps)
    wanted = {TopicPartition(LIFECYCLE.name, m.partition) for m in landed}
    async with reader(kafka.bootstrap, "port-test-reader") as consumer:
        consumer.assign(sorted(wanted))
        await consumer.seek_to_beginning(*wanted)
        ends = await consumer.end_offsets(list(wanted))
        records = [r async for r in read_to_end(consumer, sorted(wanted))]
    for tp in wanted:
        offsets = [r.offset for r in records if r.partition == tp.partition]
        assert offsets == sorted(offsets) and offsets[-1] == ends[tp] - 1
    mine = [r for r in records if r.key in {k.encode() for k in keys}]
    assert len(mine) == 3
    assert all(dict(r.headers)[EVENT_TYPE_HEADER] == b"callrec.v1.LegEnded" for r in mine)


async def test_a_record_kafka_refuses_for_good_is_not_retriable(kafka: KafkaBroker) -> None:
    publisher = EventPublisher(kafka.bootstrap, "port-test-big", max_request_size=64)
    await publisher.start()
    try:
        with pytest.raises(EventLogRefused) as refused:
            await publisher.publish(ended("Port:big"))
    finally:
        await publisher.stop()
    assert not refused.value.retriable


async def test_no_broker_is_retriable() -> None:
    publisher = EventPublisher(f"127.0.0.1:{free_port()}", "port-test-away")
    with pytest.raises(EventLogUnavailable) as away:
        await publisher.start()
    assert away.value.retriable
