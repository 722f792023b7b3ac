"""Helpers of the core tests: fold a list of events, tick, project."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from callrec.avro.events import CallRecord, Event
from callrec.streams.fold import apply
from callrec.streams.model import CallState, SourcePosition
from callrec.streams.outputs import Output
from callrec.streams.projection import to_record
from callrec.streams.recorders import RecordersView, mark_ready, observe
from callrec.streams.rules import Rules
from callrec.streams.verdict import tick
from tests.streams.factory import heartbeat

RULES = Rules()
OFFSETS = itertools.count(100)


def fold(events: Iterable[Event], state: CallState | None = None) -> CallState:
    outputs: list[Output] = []
    for event in events:
        state, out = apply(state, event, SourcePosition("rec.audio.v1", 3, next(OFFSETS)))
        outputs.extend(out)
    assert state is not None
    return state


def alive(recorder: str, incarnation: str, t_us: int) -> RecordersView:
    return observe(mark_ready(RecordersView()), heartbeat(recorder, incarnation, t_us))


def ticked(state: CallState, now: int, view: RecordersView, rules: Rules = RULES) -> CallState:
    new, _ = tick(state, now, view, rules)
    assert new is not None
    return new


def semantic(record: CallRecord) -> dict[str, object]:
    """A record without what depends on how often it was published."""
    return record.model_dump(exclude={"event_id", "version", "producer_id"})


def record(state: CallState) -> CallRecord:
    return to_record(state, "test-worker")


def fold_positioned(events: list[tuple[Event, int]]) -> CallState:
    state: CallState | None = None
    for event, offset in events:
        state, _ = apply(state, event, SourcePosition("rec.audio.v1", 1, offset))
    assert state is not None
    return state


def live_view(now: int) -> RecordersView:
    view = mark_ready(RecordersView())
    for recorder in ("rec-a", "rec-b"):
        view = observe(view, heartbeat(recorder, "inc-1", now))
    return view
