"""The worker folds chunks skimmed (codec.decode_skimming); the replay and the tests fold them
whole. Both must give the same call, the same outputs, in any order."""

from __future__ import annotations

from hypothesis import given, settings

from callrec.avro import codec
from callrec.avro.events import AudioChunk, Event
from callrec.avro.skim import SkimmedChunk
from callrec.streams.fold import LegEvent, apply
from callrec.streams.model import CallState, SourcePosition
from callrec.streams.outputs import Output
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
