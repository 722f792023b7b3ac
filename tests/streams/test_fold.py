"""apply(): legs pair by call key, facts merge, duplicates change nothing, bad events refused."""

from __future__ import annotations

import pytest

from callrec.avro.events import CallStatus, Leg, LegChange
from callrec.streams.admission import refusal
from callrec.streams.errors import InvariantViolated
from callrec.streams.fold import apply
from callrec.streams.model import SourcePosition
from callrec.streams.outputs import SNAPSHOT, AudioAdded, Tally
from tests.streams.core import fold, record
from tests.streams.factory import Call, heartbeat


def test_legs_from_two_recorders_pair_into_one_call() -> None:
    call = Call()
    state = fold([call.started(Leg.NEAR_END, recorder="rec-a"),
                  call.started(Leg.FAR_END, 5_000, recorder="rec-b")])
    snap = record(state)
    assert [(leg.leg, leg.recorder_id, leg.segment) for leg in snap.legs] == [
        (Leg.NEAR_END, "rec-a", 0), (Leg.FAR_END, "rec-b", 0)]
    assert snap.status == CallStatus.ACTIVE and snap.segments == 1
    assert (snap.cluster_id, snap.refci) == (call.cluster, call.refci)


def test_every_lifecycle_change_publishes_and_versions_grow() -> None:
    call = Call()
    state, out = apply(None, call.started(Leg.NEAR_END))
    assert state is not None and state.version == 1 and SNAPSHOT in out
    assert Tally("calls_started_total", (("recorder", "rec-a"),), 1) in out
    state, out = apply(state, call.started(Leg.FAR_END))
    assert state is not None and state.version == 2
    assert not [o for o in out if isinstance(o, Tally)]  # the call started once


def test_audio_is_throttled_but_the_first_chunk_publishes_its_offset() -> None:
    call = Call()
    state = fold([call.started(Leg.NEAR_END)])
    state, out = apply(state, call.chunk(Leg.NEAR_END, 0), SourcePosition("rec.audio.v1", 2, 40))
    assert state is not None and SNAPSHOT in out and state.first_audio == (2, 40)
    state, out = apply(state, call.chunk(Leg.NEAR_END, 1), SourcePosition("rec.audio.v1", 2, 41))
    assert state is not None and SNAPSHOT not in out and state.unpublished
    assert record(state).first_audio_offset == 40


def test_a_new_chunk_counts_its_audio_once_for_its_recorder() -> None:
    # given a started leg
    call = Call()
    state = fold([call.started(Leg.NEAR_END)])
    # when a chunk of 10 packets (4 payload bytes each, 3 lost) is folded, then again
    chunk = call.chunk(Leg.NEAR_END, 0, lost=3)
    state, out = apply(state, chunk, SourcePosition("rec.audio.v1", 2, 40))
    _, again = apply(state, chunk, SourcePosition("rec.audio.v1", 2, 40))
    # then the first adds its audio to its recorder's counters, the duplicate nothing
    assert [o for o in out if isinstance(o, AudioAdded)] == [AudioAdded("rec-a", 40, 10, 3)]
    assert again == ()


def test_a_duplicate_changes_nothing() -> None:
    call = Call()
    events = call.simple(chunks=3)
    state = fold(events)
    for event in events:
        again, out = apply(state, event, SourcePosition("rec.audio.v1", 3, 999))
        assert again is state and out == ()


def test_chunks_dedup_on_leg_and_seq_whatever_the_event_id() -> None:
    call = Call()
    first = call.chunk(Leg.NEAR_END, 0)
    resent = first.model_copy(update={"event_id": call.chunk(Leg.NEAR_END, 0).event_id})
    state = fold([call.started(Leg.NEAR_END), first, call.chunk(Leg.NEAR_END, 2), resent])
    leg = record(state).legs[0]
    assert (leg.chunk_count, leg.last_chunk_seq, leg.packets_received) == (2, 2, 20)
    state = fold([call.chunk(Leg.NEAR_END, 1)], state)
    assert state.legs[0].audio.contiguous == 3 and not state.legs[0].audio.above


def test_hold_and_party_change_take_the_latest_by_event_time() -> None:
    call = Call()
    state = fold([
        call.started(Leg.NEAR_END),
        call.updated(Leg.NEAR_END, 3_000_000, LegChange.RESUME),
        call.updated(Leg.NEAR_END, 1_000_000, LegChange.HOLD),
        call.updated(Leg.FAR_END, 2_000_000, LegChange.PARTY_CHANGE, far_end_addr="2000"),
    ])
    snap = record(state)
    assert not snap.legs[0].on_hold
    assert snap.far_end_addr == "2000"


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda c: c.started(Leg.NEAR_END).model_copy(update={"refci": "other"}), "call key"),
        (lambda c: c.chunk(Leg.NEAR_END, -1), "negative"),
        (lambda c: heartbeat("rec-a", "i", 0), "not a call"),
    ],
)
def test_invariant_violations_are_refused(make: object, why: str) -> None:
    call = Call()
    refused = refusal(None, make(call))  # type: ignore[operator]
    assert isinstance(refused, InvariantViolated) and why in str(refused)


def test_a_leg_cannot_change_sides() -> None:
    call = Call()
    state = fold([call.started(Leg.NEAR_END)])
    near_id = call.leg_id(Leg.NEAR_END)
    flipped = call.ended(Leg.FAR_END, 1_000).model_copy(update={"leg_id": near_id})
    refused = refusal(state, flipped)
    assert refused is not None and "was NEAR_END" in str(refused)
