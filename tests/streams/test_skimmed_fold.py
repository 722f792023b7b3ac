"""The worker folds chunks skimmed (codec.decode_skimming); the replay and the tests fold them
whole. Both must give the same call, the same outputs, in any order."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest
from hypothesis import given, settings

from callrec.avro import codec
from callrec.avro.events import AbnormalReason, AudioChunk, CallStatus, Event, Leg
from callrec.avro.skim import SkimmedChunk
from callrec.streams.admission import refusal
from callrec.streams.fold import LegEvent, apply
from callrec.streams.model import CallState, SourcePosition, Verdict
from callrec.streams.outputs import Output
from tests.streams.core import fold
from tests.streams.factory import Call
from tests.streams.strategies import reordered


def skimmed(event: Event) -> LegEvent:
    decoded = codec.decode_skimming(codec.encode(event))
    assert isinstance(decoded, SkimmedChunk) == isinstance(event, AudioChunk)
    assert not isinstance(decoded, AudioChunk)
    return decoded  # type: ignore[return-value]


def fold_all(events: list[tuple[LegEvent, int]]) -> tuple[CallState | None, list[Output]]:
    state: CallState | None = None
    outputs: list[Output] = []
    for event, offset in events:
        state, out = apply(state, event, SourcePosition("rec.audio.v1", 3, offset))
        outputs += out
    return state, outputs


@settings(max_examples=100, deadline=None)
@given(reordered())
def test_skimmed_chunks_fold_into_the_same_call_as_whole_ones(case: tuple) -> None:  # type: ignore[type-arg]
    # given a call's events in any order, with duplicates
    _, _, shuffled = case
    # when folded as the worker reads them (chunks skimmed) and as the replay does (whole)
    got = fold_all([(skimmed(event), offset) for event, offset in shuffled])
    expected = fold_all(shuffled)
    # then the state and every output (snapshots, tallies) are the same
    assert got == expected


def test_a_chunk_keeps_every_fact_of_the_call_it_does_not_change() -> None:
    # given a call with a value in every field (apply builds the state field by field)
    call = Call()
    base = replace(fold([call.started(Leg.NEAR_END)]), verdict=Verdict(
        CallStatus.ABNORMAL, AbnormalReason.OTHER, "d", call.t0), version=7, unpublished=True,
        last_snapshot_tick=5, reopened=2, rejudge=True)
    # when a chunk is folded into it
    folded, _ = apply(base, skimmed(call.chunk(Leg.NEAR_END, 0)),
                      SourcePosition("rec.audio.v1", 3, 9))
    # then only what a chunk changes changed
    assert folded is not None
    changed = {f.name for f in fields(CallState)
               if getattr(folded, f.name) != getattr(base, f.name)}
    assert changed <= {"legs", "first_audio", "newest_fact_at", "first_seen_at", "partition"}
    assert "legs" in changed and "first_audio" in changed


def _refusal_cases() -> list[tuple[str, CallState | None, AudioChunk, bytes | None]]:
    call, other = Call(), Call()
    state = fold([call.started(Leg.NEAR_END)])
    chunk = call.chunk(Leg.NEAR_END, 0)
    flipped = call.chunk(Leg.FAR_END, 0).model_copy(update={"leg_id": call.leg_id(Leg.NEAR_END)})
    return [
        ("a new call", None, chunk, chunk.kafka_key),
        ("a known call", state, chunk, chunk.kafka_key),
        ("no Kafka key given", state, chunk, None),
        ("the other leg, not started yet", state, call.chunk(Leg.FAR_END, 0), chunk.kafka_key),
        ("another call's Kafka key", state, chunk, other.key.encode()),
        ("folded into another call", fold([other.started(Leg.NEAR_END)]), chunk, None),
        ("a leg changing sides", state, flipped, chunk.kafka_key),
        ("a negative chunk_seq", None, call.chunk(Leg.NEAR_END, -1), chunk.kafka_key),
        ("a negative chunk_seq, known call", state, call.chunk(Leg.NEAR_END, -1), None),
    ]


@pytest.mark.parametrize(("case", "state", "chunk", "key"), _refusal_cases(),
                         ids=[case[0] for case in _refusal_cases()])
def test_a_skimmed_chunk_is_refused_exactly_as_the_whole_chunk(
    case: str, state: CallState | None, chunk: AudioChunk, key: bytes | None
) -> None:
    # given a chunk, whole and skimmed (refusal has a fast path for skimmed chunks)
    # when admission judges both against the same state and Kafka key
    whole, skim = refusal(state, chunk, key), refusal(state, skimmed(chunk), key)
    # then both are admitted, or both refused for the same reason
    assert (whole is None) == (skim is None) == (case.startswith(("a new", "a known", "no ",
                                                                  "the other")))
    assert str(whole) == str(skim)
