"""A bad record as large as a topic takes, on a call topic, against a real worker process: it
becomes a small dead letter (its first 64 KiB, its size and SHA-256) and call state keeps
folding. Before, the dead letter copied the whole record, Kafka refused it, and the worker
retried that send forever: no call was published or committed again."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from callrec.avro.events import CallRecord, CallStatus
from callrec.avro.topics import AUDIO, MAX_RECORD_BYTES
from callrec.deadletters import DEAD_LETTER_PAYLOAD_BYTES
from callrec.eventlog import new_producer
from callrec.infra.kafka import KafkaBroker
from tests.streams.factory import Call, new_call_key
from tests.streams.harness import Reader, StreamsWorker, heartbeats, publish, running_worker

CLUSTER = f"BigRecordTest{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def worker(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamsWorker]:
    data_dir = tmp_path_factory.mktemp("streams-big")
    with running_worker(kafka.bootstrap, f"big-test-{uuid.uuid4().hex[:8]}", data_dir,
                        "worker-big") as proc:
        yield proc


async def test_a_2_mib_bad_record_makes_a_small_dead_letter_and_calls_keep_folding(
    kafka: KafkaBroker, worker: StreamsWorker
) -> None:
    recorder = f"rec-{uuid.uuid4().hex[:6]}"
    call = Call(key=new_call_key(CLUSTER), t0=time.time_ns() // 1000, recorder=recorder,
                incarnation="i1")
    key = call.key.encode()
    # As large as the topic and the producer take: its whole copy in a dead letter is not.
    junk = os.urandom(MAX_RECORD_BYTES - 8 - DefaultRecordBatchBuilder.estimate_size_in_bytes(
        key, b"", []))  # (8: the value's longer length varint, and some)
    producer = new_producer(kafka.bootstrap, "big-record-test")
    await producer.start()
    try:
        landed = await producer.send_and_wait(AUDIO.name, junk, key=key)
    finally:
        await producer.stop()
    async with heartbeats(kafka.bootstrap, {recorder: "i1"}), Reader(kafka.bootstrap) as reader:
        await publish(kafka.bootstrap, call.simple(chunks=2))
        got = (await reader.wait_for([call.key], lambda r: isinstance(r, CallRecord)
                                     and r.status != CallStatus.ACTIVE, within_s=30))[call.key]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            mine = [d for d in reader.dead if d.source_key == key]
            if mine:
                break
            await reader.poll()
    assert got.status == CallStatus.COMPLETED
    [letter] = mine
    assert (letter.source_offset, letter.error_type) == (landed.offset, "UndecodableEvent")
    assert letter.payload == junk[:DEAD_LETTER_PAYLOAD_BYTES]
    assert letter.payload_size == len(junk)
    assert letter.payload_sha256 == hashlib.sha256(junk).hexdigest()
