"""Every event type through the real broker with the real serializer; bad bytes to dead letters."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callrec.avro import codec
from callrec.avro.errors import ContractError
from callrec.avro.events import EVENT_TYPES, DeadLetter, Event
from callrec.avro.topics import DEADLETTER, LIFECYCLE, TOPIC_OF
from callrec.deadletters import bounded
from callrec.eventlog import EventLogUnavailable, EventPublisher, read_events
from callrec.infra.kafka import KafkaBroker
from callrec.infra.procs import free_port
from tests.avro.strategies import datum
from tests.avro.writer import SCHEMAS, write_with_schema


def samples() -> list[Event]:
    """One event of every type, drawn from its schema."""
    found: list[Event] = []

    @settings(max_examples=1, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def draw(data: st.DataObject) -> None:
        for model in EVENT_TYPES:
            found.append(codec.decode(write_with_schema(SCHEMAS[model], data.draw(datum(
                SCHEMAS[model])))))

    draw()
    return found


Records = list[tuple[str, bytes | None, bytes]]


async def consume(bootstrap: str, topics: list[str], done: Callable[[Records], bool],
                  seconds: float = 20.0) -> Records:
    """Read the topics from their start until ``done`` says enough (or time runs out)."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap,
                                group_id=f"test-{uuid.uuid4()}", auto_offset_reset="earliest")
    await consumer.start()
    got: Records = []
    try:
        deadline = time.monotonic() + seconds
        while not done(got) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            got += [(r.topic, r.key, r.value or b"") for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    return got


async def test_every_event_type_round_trips_through_kafka(kafka: KafkaBroker) -> None:
    events = samples()
    publisher = EventPublisher(kafka.bootstrap, "test-roundtrip")
    await publisher.start()
    try:
        for event in events:
            await publisher.publish(event)
    finally:
        await publisher.stop()
    topics = sorted({spec.name for spec in TOPIC_OF.values()})
    mine = {e.event_id for e in events}
    received: dict[uuid.UUID, Event] = {}

    def all_mine(records: Records) -> bool:
        for topic, key, value in records[len(seen):]:
            seen.append((topic, key, value))
            try:
                event = codec.decode(value)
            except ContractError:
                continue  # other tests' deliberately bad records
            if event.event_id in mine:
                assert topic == TOPIC_OF[type(event)].name
                assert key == event.kafka_key
                received[event.event_id] = event
        return received.keys() == mine

    seen: Records = []
    await consume(kafka.bootstrap, topics, all_mine, seconds=60)
    assert sorted(map(str, received)) == sorted(map(str, mine))
    for event in events:  # the port bounds every dead letter (adds its size and hash)
        assert received[event.event_id] == (
            bounded(event) if isinstance(event, DeadLetter) else event)


async def test_undecodable_record_goes_to_the_dead_letter_topic(kafka: KafkaBroker) -> None:
    marker = uuid.uuid4().hex.encode()
    raw = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await raw.start()
    await raw.send_and_wait(LIFECYCLE.name, b"not avro " + marker, key=marker)
    await raw.stop()

    publisher = EventPublisher(kafka.bootstrap, "test-dlq")
    await publisher.start()
    consumer = AIOKafkaConsumer(LIFECYCLE.name, bootstrap_servers=kafka.bootstrap,
                                group_id=f"dlq-{marker.decode()}", auto_offset_reset="earliest")
    await consumer.start()

    async def drain() -> None:
        async for _ in read_events(consumer, publisher):
            pass

    task = asyncio.create_task(drain())
    try:
        deadline = time.monotonic() + 20
        letters: list[DeadLetter] = []
        while not letters and time.monotonic() < deadline:
            for _, _, value in await consume(kafka.bootstrap, [DEADLETTER.name],
                                             lambda _: False, 2):
                letter = codec.decode(value)
                assert isinstance(letter, DeadLetter)
                if letter.source_key == marker:
                    letters.append(letter)
    finally:
        task.cancel()
        await consumer.stop()
        await publisher.stop()
    [letter] = letters
    assert letter.payload == b"not avro " + marker
    assert letter.source_topic == LIFECYCLE.name
    assert letter.error_type == "UndecodableEvent"
    assert "marker" in letter.reason


async def test_unreachable_broker_is_a_clear_error_not_a_hang() -> None:
    publisher = EventPublisher(f"127.0.0.1:{free_port()}", "test-down", request_timeout_ms=2000)
    started = time.monotonic()
    with pytest.raises(EventLogUnavailable, match="cannot reach Kafka"):
        await asyncio.wait_for(publisher.start(), timeout=60)
    assert time.monotonic() - started < 60
