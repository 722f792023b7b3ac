"""Rebuild every call from a history of events with the same pure functions the worker runs.

The live worker ticks on its wall clock; a rebuild ticks on event time: it merges the calls'
events and the heartbeats in event-time order and ticks every ``tick_s`` of event time, then
once more at ``end`` (the time the rebuild runs). Verdicts record fact times, and a call judged
before later facts arrived is judged again on all of them, so both agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from callrec.avro.events import Event, RecorderHeartbeat
from callrec.streams.admission import is_leg_event, refusal
from callrec.streams.fold import apply, micros
from callrec.streams.model import CallState, SourcePosition
from callrec.streams.recorders import RecordersView, mark_ready, observe
from callrec.streams.rules import Rules
from callrec.streams.verdict import due, tick

Positioned = tuple[Event, SourcePosition | None]


@dataclass
class Rebuilt:
    calls: dict[str, CallState] = field(default_factory=dict)
    rejected: list[tuple[Positioned, str]] = field(default_factory=list)


def rebuild(history: Iterable[Positioned], rules: Rules, end: int, tick_s: float = 1.0) -> Rebuilt:
    """Fold ``history`` (any order) into calls as of ``end``, microseconds since the epoch."""
    result = Rebuilt()
    view = mark_ready(RecordersView())
    step = rules.us(tick_s)
    next_tick: int | None = None
    for event, position in sorted(history, key=lambda item: micros(item[0].event_time)):
        at = micros(event.event_time)
        if next_tick is None:
            next_tick = at - at % step + step
        while at >= next_tick:
            if not _tick_all(result, next_tick, view, rules):
                next_tick = max(next_tick, at - at % step)  # nothing open: skip the idle time
            next_tick += step
        if isinstance(event, RecorderHeartbeat):
            view = observe(view, event)
        else:
            _fold_one(result, event, position)
    _tick_all(result, end, view, rules)
    return result


def _fold_one(result: Rebuilt, event: Event, position: SourcePosition | None) -> None:
    state = result.calls.get(event.call_key) if is_leg_event(event) else None
    refused = refusal(state, event)
    if refused is not None or not is_leg_event(event):
        result.rejected.append(((event, position), str(refused)))
        return
    folded, _ = apply(state, event, position)
    if folded is not None:
        result.calls[event.call_key] = folded


def _tick_all(result: Rebuilt, now: int, view: RecordersView, rules: Rules) -> bool:
    """Tick the calls with something to judge (a rebuild does not evict); False when none."""
    open_calls = [(k, state) for k, state in result.calls.items() if due(state, now, rules)]
    for key, state in open_calls:
        ticked, _ = tick(state, now, view, rules)
        if ticked is not None:
            result.calls[key] = ticked
    return bool(open_calls)
