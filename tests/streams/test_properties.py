"""Hypothesis: any reordering or duplication of a call's events folds into the same call, and a
terminal call never becomes active again, whenever the ticks come."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from callrec.avro.events import CallStatus
from callrec.streams.fold import apply
from callrec.streams.model import CallState, SourcePosition
from callrec.streams.verdict import tick
from tests.streams.core import RULES, fold_positioned, live_view, record, semantic
from tests.streams.strategies import SEGMENT_US, reordered


def facts(state: CallState) -> CallState:
    return replace(state, version=0, unpublished=False, last_snapshot_tick=0)


@settings(max_examples=200, deadline=None)
@given(reordered())
def test_any_order_and_duplicates_fold_into_the_same_call(case: tuple) -> None:  # type: ignore[type-arg]
    _, original, shuffled = case
    expected, got = fold_positioned(original), fold_positioned(shuffled)
    assert facts(got) == facts(expected)
    assert semantic(record(got)) == semantic(record(expected))


@settings(max_examples=200, deadline=None)
@given(reordered())
def test_the_verdict_does_not_depend_on_the_order(case: tuple) -> None:  # type: ignore[type-arg]
    call, original, shuffled = case
    now = call.t0 + 4 * SEGMENT_US
    finals = []
    for events in (original, shuffled):
        state, _ = tick(fold_positioned(events), now, live_view(now), RULES)
        assert state is not None
        finals.append(semantic(record(state)))
    assert finals[0] == finals[1]


@settings(max_examples=200, deadline=None)
@given(reordered(), st.lists(st.integers(0, 4 * SEGMENT_US), max_size=8))
def test_terminal_never_becomes_active_and_versions_only_grow(
    case: tuple, tick_times: list[int]  # type: ignore[type-arg]
) -> None:
    call, _, shuffled = case
    ticks = sorted(tick_times)
    state: CallState | None = None
    terminal = False
    version = 0
    for n, (event, offset) in enumerate(shuffled):
        state, _ = apply(state, event, SourcePosition("rec.audio.v1", 1, offset))
        assert state is not None
        if ticks and n % 3 == 0:
            now = call.t0 + ticks.pop(0)
            ticked, _ = tick(state, now, live_view(now), RULES)
            assert ticked is not None
            state = ticked
        terminal = terminal or state.is_terminal
        assert not terminal or state.status != CallStatus.ACTIVE
        assert state.version >= version
        version = state.version
