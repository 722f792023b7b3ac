"""Snapshots go out with the save before each commit: one per call, at its latest version."""

from __future__ import annotations

from callrec.avro.events import CallRecord, Leg
from callrec.streams.processor import CallProcessor
from tests.streams.core import RULES, alive
from tests.streams.factory import Call
from tests.streams.test_processor_lag import Clock, Sent, incoming


def processor_of(call: Call, sent: Sent) -> CallProcessor:
    return CallProcessor(worker_id="w", rules=RULES, emitter=sent,  # type: ignore[arg-type]
                         recorders=lambda: alive("rec-a", "inc-1", call.t0), clock=Clock(call.t0))


def test_a_call_changed_several_times_between_saves_is_published_once_at_its_latest() -> None:
    # given a call whose legs start and first audio arrives in two batches before a save
    call = Call()
    sent = Sent()
    processor = processor_of(call, sent)
    records = incoming([call.started(Leg.NEAR_END), call.started(Leg.FAR_END, 10_000),
                        call.chunk(Leg.NEAR_END, 0)])
    processor.fold_batch(records[:1])
    processor.fold_batch(records[1:])
    # then nothing is sent before the save
    assert sent.records == []
    # when the worker saves (before it commits)
    processor.save()
    # then one snapshot went out, the latest version, with both legs and the first audio
    state = processor.get(call.key.encode())
    assert state is not None and state.version == 3
    assert len(sent.records) == 1
    record = sent.records[0]
    assert isinstance(record, CallRecord)
    assert record.version == state.version and len(record.legs) == 2
    assert (record.first_audio_partition, record.first_audio_offset) == (0, 2)
    # and a save with nothing new publishes nothing more
    processor.save()
    assert len(sent.records) == 1


def test_snapshots_of_partitions_given_up_are_not_sent() -> None:
    call = Call()
    sent = Sent()
    processor = processor_of(call, sent)
    processor.fold_batch(incoming([call.started(Leg.NEAR_END)]))
    processor.keep_only({1, 2})  # the call's partition (0) went to another worker
    processor.save()
    assert sent.records == []
