"""Hypothesis: any reordering or duplication of a call's events folds into the same call, and the
final verdict is the same whenever the ticks came."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from callrec.avro.events import CallRecord
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
def test_the_final_verdict_does_not_depend_on_when_the_ticks_came(
    case: tuple, tick_times: list[int]  # type: ignore[type-arg]
) -> None:
    """Live (ticks on the wall clock, facts arriving late) and replay (ticks on event time) end
    with the same record: a verdict given before later facts is judged again on all of them."""
    call, _, shuffled = case
    ticks = sorted(tick_times)
    state: CallState | None = None
    version = 0
    for n, (event, offset) in enumerate(shuffled):
        state, _ = apply(state, event, SourcePosition("rec.audio.v1", 1, offset))
        assert state is not None
        if ticks and n % 3 == 0:
            now = call.t0 + ticks.pop(0)
            ticked, _ = tick(state, now, live_view(now), RULES)
            assert ticked is not None
            state = ticked
        assert state.version >= version
        version = state.version
    assert state is not None
    end = call.t0 + 4 * SEGMENT_US
    live, _ = tick(state, end, live_view(end), RULES)
    replayed, _ = tick(fold_positioned(shuffled), end, live_view(end), RULES)
    assert live is not None and replayed is not None
    assert without_reopened(record(live)) == without_reopened(record(replayed))
    assert live.reopened == 0 or tick_times, "only a tick can give a verdict to withdraw"


def without_reopened(record: CallRecord) -> dict[str, object]:
    """How often a verdict was withdrawn depends on when the ticks came; nothing else may."""
    facts = semantic(record)
    facts.pop("reopened")
    return facts
