"""Which events may be folded into a call: decided once, before the fold, by the live worker and
the replay alike.

House style's "decide, then record": the fold only merges facts and never re-checks, so a replay
cannot fail halfway, and the worker and `callrec streams replay` refuse exactly the same events
(the worker dead-letters them with the reason; the replay counts them).
"""

from __future__ import annotations

from typing import TypeGuard

from callrec.avro.events import Event, LegStarted
from callrec.avro.skim import SkimmedChunk
from callrec.streams.errors import InvariantViolated
from callrec.streams.fold import AUDIO, LegEvent
from callrec.streams.model import CallState


def is_leg_event(event: Event | SkimmedChunk) -> TypeGuard[LegEvent]:
    return isinstance(event, LegEvent)


def refusal(
    state: CallState | None, event: Event | SkimmedChunk, kafka_key: bytes | None = None
) -> InvariantViolated | None:
    """Why ``event`` must not be folded into ``state`` (its call's state so far), or None."""
    if type(event) is SkimmedChunk and _chunk_admitted(state, event, kafka_key):
        return None
    if not is_leg_event(event):
        return InvariantViolated(f"{type(event).__name__} is not a call lifecycle or audio event")
    if kafka_key is not None and kafka_key != event.kafka_key:
        return InvariantViolated(
            f"Kafka key {kafka_key!r} is not the event's call key {event.call_key!r}")
    if state is not None and state.call_key != event.call_key:
        return InvariantViolated(
            f"event of call {event.call_key!r} folded into {state.call_key!r}")
    leg = state.leg(event.leg_id) if state is not None else None
    if leg is not None and leg.side != event.leg:
        return InvariantViolated(
            f"leg {event.leg_id} was {leg.side.value}, this event says {event.leg.value}")
    if isinstance(event, LegStarted) and f"{event.cluster_id}:{event.refci}" != event.call_key:
        return InvariantViolated(
            f"LegStarted of {event.call_key!r} carries cluster {event.cluster_id!r} and refci "
            f"{event.refci!r}: the call key must be '<cluster id>:<x-refci>'")
    if isinstance(event, AUDIO) and event.chunk_seq < 0:
        return InvariantViolated(f"chunk_seq {event.chunk_seq} of leg {event.leg_id} is negative")
    return None


def _chunk_admitted(state: CallState | None, chunk: SkimmedChunk, kafka_key: bytes | None) -> bool:
    """``refusal``'s checks that can fail a chunk, all passed (the worker's hot path: most of
    its events). False leaves the reason to ``refusal``'s general path."""
    if (kafka_key is not None and kafka_key != chunk.kafka_key) or chunk.chunk_seq < 0:
        return False
    if state is None:
        return True
    if state.call_key != chunk.call_key:
        return False
    leg = state.leg(chunk.leg_id)
    return leg is None or leg.side == chunk.leg
