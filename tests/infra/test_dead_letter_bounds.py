"""Every dead letter is bounded where the event-log port builds or sends it: a bad record of any
size makes a letter Kafka takes, which still says how large the record was and its SHA-256."""

from __future__ import annotations

import hashlib
import os
import uuid

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from callrec.avro import codec
from callrec.avro.events import DeadLetter
from callrec.avro.topics import ALL_TOPICS, MAX_RECORD_BYTES
from callrec.deadletters import DEAD_LETTER_PAYLOAD_BYTES, UnsentRecord, bounded, dead_letter_for
from callrec.eventlog import PRODUCER_DEFAULTS, EventPublisher, read_to_end, reader
from callrec.infra.kafka import KafkaBroker


@given(size=st.sampled_from([0, 1, DEAD_LETTER_PAYLOAD_BYTES, DEAD_LETTER_PAYLOAD_BYTES + 1,
                             MAX_RECORD_BYTES, 3 * MAX_RECORD_BYTES]),
       key_size=st.sampled_from([0, 10, 100_000]), reason_size=st.sampled_from([5, 100_000]))
def test_a_dead_letter_keeps_the_head_size_and_hash_and_always_fits(
    size: int, key_size: int, reason_size: int
) -> None:
    value = bytes(range(256)) * (size // 256) + bytes(size % 256)
    record = UnsentRecord("rec.lifecycle.v1", b"k" * key_size, value, 3, 42)
    letter = dead_letter_for(record, ValueError("x" * reason_size), "worker-1")
    assert letter.payload == value[:DEAD_LETTER_PAYLOAD_BYTES]
    assert letter.payload_size == size
    assert letter.payload_sha256 == hashlib.sha256(value).hexdigest()
    assert (letter.source_partition, letter.source_offset) == (3, 42)
    assert len(codec.encode(letter)) < DEAD_LETTER_PAYLOAD_BYTES + 16 * 1024


def test_bounding_twice_changes_nothing_and_keeps_the_first_hash() -> None:
    letter = dead_letter_for(UnsentRecord("t", None, b"z" * 100_000), ValueError("bad"), "p")
    assert bounded(letter) is letter


def test_a_letter_built_elsewhere_is_bounded_too() -> None:
    """The mixer builds its own letters (undecodable audio) and sends them through the port."""
    letter = DeadLetter(producer_id="mixer", source_topic="rec.audio.v1", source_partition=1,
                        source_offset=9, payload=b"a" * 300_000, error_type="UndecodableAudio",
                        reason="chunk 3")
    assert len(bounded(letter).payload) == DEAD_LETTER_PAYLOAD_BYTES
    assert bounded(letter).payload_size == 300_000


def test_every_topic_takes_what_every_producer_may_send() -> None:
    assert PRODUCER_DEFAULTS["max_request_size"] == MAX_RECORD_BYTES
    assert {t.name: t.config.get("max.message.bytes") for t in ALL_TOPICS} == {
        t.name: str(MAX_RECORD_BYTES) for t in ALL_TOPICS}


async def test_the_port_bounds_a_letter_it_is_given_whole(kafka: KafkaBroker) -> None:
    """The mixer publishes letters it built itself: a 2 MiB payload still lands, bounded."""
    payload = os.urandom(MAX_RECORD_BYTES)
    letter = DeadLetter(producer_id="bounds-test", source_topic="rec.audio.v1",
                        source_partition=0, source_offset=uuid.uuid4().int % 2**62,
                        payload=payload, error_type="UndecodableAudio", reason="test")
    publisher = EventPublisher(kafka.bootstrap, "bounds-test")
    await publisher.start()
    try:
        landed = await publisher.publish(letter)
    finally:
        await publisher.stop()
    tp = TopicPartition(landed.topic, landed.partition)
    async with reader(kafka.bootstrap, "bounds-test-read") as consumer:
        consumer.assign([tp])
        consumer.seek(tp, landed.offset)
        [record] = [r async for r in read_to_end(consumer, [tp], {tp: landed.offset + 1})]
    got = codec.decode(record.value or b"")
    assert isinstance(got, DeadLetter) and got.source_offset == letter.source_offset
    assert got.payload == payload[:DEAD_LETTER_PAYLOAD_BYTES] and got.payload_size == len(payload)
