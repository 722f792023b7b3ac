"""The recorder's outbox against the real broker, given a record Kafka will never take: it goes
to the quarantine file and, bounded, to rec.deadletter.v1, is counted, and the events after it
still flow (before, it was counted as published and dropped; a chunk over the limit blocked the
outbox).

Both ways Kafka refuses are driven: the producer refuses a record above its ``max_request_size``
before sending it, and the broker refuses one above the topic's ``max.message.bytes`` (a
producer allowed more than the topic, as an older configuration was)."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from callrec.avro import codec
from callrec.avro.errors import ContractError
from callrec.avro.events import DeadLetter, Event, LegEnded, LegEndReason, MetricSample
from callrec.avro.topics import DEADLETTER, LIFECYCLE, MAX_RECORD_BYTES, METRICS
from callrec.deadletters import DEAD_LETTER_PAYLOAD_BYTES
from callrec.eventlog import EventPublisher, read_to_end, reader
from callrec.eventlog import topic_partitions as partitions_of
from callrec.infra.kafka import KafkaBroker
from callrec.producers.outbox import QUARANTINED_METRIC, Outbox
from callrec.producers.quarantine import read_quarantined
from callrec.producers.spool import Spool


def ended(call_key: str, leg_id: str) -> LegEnded:
    return LegEnded(producer_id="outbox-test", call_key=call_key, leg="NEAR_END", leg_id=leg_id,
                    reason=LegEndReason.BYE, packets_received=1, packets_lost=0,
                    payload_bytes=160, chunk_count=1)


async def read_all(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    tps = await partitions_of(bootstrap, [topic])
    async with reader(bootstrap, f"outbox-test-{uuid.uuid4().hex[:6]}") as consumer:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        return [r async for r in read_to_end(consumer, tps)]


def decoded(records: list[ConsumerRecord[bytes, bytes]]) -> list[Event]:
    """The events in log order, each once: the outbox resends what followed a failed send (at
    least once; consumers deduplicate on event_id), e.g. after the broker refused a batch."""
    events = {}
    for record in records:
        try:
            event = codec.decode(record.value or b"")
        except ContractError:
            continue  # another test's deliberately bad record on the shared topic
        events.setdefault(event.event_id, event)
    return list(events.values())


@pytest.mark.parametrize(
    ("max_request_size", "bad_size"),
    [(None, MAX_RECORD_BYTES + 1024), (4 * MAX_RECORD_BYTES, MAX_RECORD_BYTES + 64 * 1024)],
    ids=["refused by the producer", "refused by the broker"],
)
async def test_a_record_kafka_refuses_is_quarantined_dead_lettered_and_the_rest_flows(
    kafka: KafkaBroker, tmp_path: Path, max_request_size: int | None, bad_size: int
) -> None:
    call_key = f"OutboxTest:{uuid.uuid4().hex[:8]}"
    recorder = f"rec-{uuid.uuid4().hex[:6]}"
    overrides = {} if max_request_size is None else {"max_request_size": max_request_size}
    outbox = Outbox(Spool(tmp_path / "spool", 64 * 1024**2),
                    lambda: EventPublisher(kafka.bootstrap, recorder, **overrides),
                    producer_id=recorder)
    bad = os.urandom(bad_size)
    outbox.start()
    try:
        outbox.put(ended(call_key, "before"))
        outbox.put_encoded(LIFECYCLE.name, call_key.encode(), LegEnded.avro_name, bad)
        for n in range(3):
            outbox.put(ended(call_key, f"after-{n}"))
        assert await outbox.flush(timeout_s=30), "the outbox is stuck on the refused record"
        assert await outbox.flush(timeout_s=30)  # the dead letter and sample spooled after it
    finally:
        await outbox.close()

    assert (outbox.rejected, outbox.published) == (1, 6)  # 4 events, a dead letter, a sample
    [kept] = list(read_quarantined(outbox.quarantine.path))
    assert outbox.quarantine.path == tmp_path / "quarantine" / "records.jsonl"
    assert (kept.topic, kept.key, kept.value, kept.size) == (
        LIFECYCLE.name, call_key.encode(), bad, bad_size)
    assert kept.sha256 == hashlib.sha256(bad).hexdigest() and "Refused" in kept.error

    lifecycle = [e for e in decoded(await read_all(kafka.bootstrap, LIFECYCLE.name))
                 if isinstance(e, LegEnded) and e.call_key == call_key]
    assert [e.leg_id for e in lifecycle] == ["before", "after-0", "after-1", "after-2"]
    [letter] = [e for e in decoded(await read_all(kafka.bootstrap, DEADLETTER.name))
                if isinstance(e, DeadLetter) and e.payload_sha256 == kept.sha256]
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        LIFECYCLE.name, -1, -1)
    assert letter.payload == bad[:DEAD_LETTER_PAYLOAD_BYTES] and letter.payload_size == bad_size
    assert (letter.producer_id, letter.error_type) == (recorder, "EventLogRefused")
    samples = [e for e in decoded(await read_all(kafka.bootstrap, METRICS.name))
               if isinstance(e, MetricSample) and e.producer_id == recorder]
    assert [(s.metric, s.labels, s.value) for s in samples] == [
        (QUARANTINED_METRIC, {"recorder": recorder}, 1.0)]


async def test_a_quarantine_that_cannot_be_written_keeps_the_record_in_the_spool(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    """Nothing leaves the spool before it is on disk elsewhere: with the quarantine directory
    unwritable the record stays (and blocks), and it is quarantined once the disk is back."""
    call_key = f"OutboxTest:{uuid.uuid4().hex[:8]}"
    spool = Spool(tmp_path / "spool", 64 * 1024**2)
    outbox = Outbox(spool, lambda: EventPublisher(kafka.bootstrap, "outbox-test-full"))
    blocker = tmp_path / "quarantine"
    blocker.write_text("a file where the quarantine directory should be")
    outbox.start()
    try:
        outbox.put_encoded(LIFECYCLE.name, call_key.encode(), LegEnded.avro_name,
                           os.urandom(MAX_RECORD_BYTES + 1))
        outbox.put(ended(call_key, "after"))
        assert not await outbox.flush(timeout_s=3)
        assert outbox.rejected == 0 and outbox.backlog == 2
        blocker.unlink()
        assert await outbox.flush(timeout_s=30)
    finally:
        await outbox.close()
    assert outbox.rejected == 1
    assert len(list(read_quarantined(blocker / "records.jsonl"))) == 1
