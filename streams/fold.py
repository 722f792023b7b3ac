"""``apply(state, event) -> (state, outputs)``: fold one lifecycle or audio event into its call.

The fold only merges facts (see model.py); it never decides that a call is over. Verdicts need
time (a window for a new segment, a silence threshold) and belong to the tick (verdict.py). So
folding the same events in any order, any number of times, gives the same state. A fact folded
into a call that already has a verdict flags it for the tick to judge again (``rejudge``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from functools import singledispatch

from callrec.avro.events import (
    AudioChunk,
    CallEvent,
    LegChange,
    LegEnded,
    LegStarted,
    LegUpdated,
)
from callrec.avro.skim import SkimmedChunk
from callrec.streams.model import (
    AudioTally,
    CallState,
    LegEnd,
    LegFacts,
    LegStart,
    Mark,
    SourcePosition,
)
from callrec.streams.outputs import SNAPSHOT, AudioAdded, Output, Tally

LegEvent = LegStarted | LegUpdated | LegEnded | AudioChunk | SkimmedChunk
"""The events a call is folded from (rec.lifecycle.v1 and rec.audio.v1); the worker reads its
chunks skimmed (``codec.decode_skimming``), the replay and the tests read them whole."""
AUDIO = (AudioChunk, SkimmedChunk)
HOLD_DIRECTIONS = frozenset({"inactive"})
MEDIA_DIRECTIONS = frozenset({"sendonly", "sendrecv"})


def micros(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000 + at.microsecond


def event_micros(event: LegEvent) -> int:
    """When the event's fact happened, in microseconds (a skimmed chunk has it so already)."""
    if isinstance(event, SkimmedChunk):
        return event.event_time_us
    return micros(event.event_time)


def apply(
    state: CallState | None, event: LegEvent, position: SourcePosition | None = None
) -> tuple[CallState | None, tuple[Output, ...]]:
    """Fold one event; a duplicate or an event that adds nothing returns the state unchanged.

    The event must have passed ``admission.refusal``: the fold trusts it.
    """
    if isinstance(event, SkimmedChunk):
        return _apply_skimmed(state, event, position)
    base = state if state is not None else CallState(call_key=event.call_key)
    current = base.leg(event.leg_id)
    leg = current if current is not None else LegFacts(leg_id=event.leg_id, side=event.leg)
    is_audio = isinstance(event, AUDIO)
    new_leg = _fold_leg(event, leg)
    # The lowest audio position is kept even from a duplicate chunk: min() does not care which
    # copy of a chunk came first.
    first_audio = _first_audio(base, position) if is_audio else base.first_audio
    # A chunk's leg is either the same object (a duplicate) or has one chunk more: no need to
    # compare every field of the two.
    unchanged = new_leg is current if is_audio else new_leg == current
    if unchanged and first_audio == base.first_audio:
        return state, ()
    outputs: list[Output] = []
    if is_audio:
        assert isinstance(event, AudioChunk)
        if new_leg is not current:
            added = new_leg.audio.payload_bytes - leg.audio.payload_bytes
            outputs.append(_audio_added(event, added))
        publish_now = first_audio != base.first_audio
    else:
        publish_now = True
        if isinstance(event, LegStarted) and not base.has_start:
            outputs.append(Tally("calls_started_total", (("recorder", event.recorder_id),), 1))
    publishable = base.is_terminal or new_leg.start is not None or base.has_start
    if base.is_terminal:
        # The tick judges the call again with this fact and publishes whatever it decides, so
        # a late fact does not make a snapshot of its own with a verdict about to change.
        publish_now = False
    folded = _folded(base, new_leg, first_audio, event_micros(event), position,
                     publish_now and publishable, base.is_terminal and not unchanged)
    if publish_now and publishable:
        outputs.append(SNAPSHOT)
    return folded, tuple(outputs)


def _folded(
    base: CallState, leg: LegFacts, first_audio: tuple[int, int] | None, at: int,
    position: SourcePosition | None, published: bool, rejudge: bool,
) -> CallState:
    """``base`` with a leg's new facts. The constructor, not dataclasses.replace (~5 us a
    call): this is the hot path."""
    return CallState(
        call_key=base.call_key,
        partition=position.partition if position is not None else base.partition,
        legs=base.legs_with(leg),
        first_audio=first_audio,
        first_seen_at=min(at, base.first_seen_at) if base.first_seen_at is not None else at,
        newest_fact_at=max(at, base.newest_fact_at) if base.newest_fact_at is not None else at,
        verdict=base.verdict,
        version=base.version + 1 if published else base.version,
        unpublished=not published,
        last_snapshot_tick=base.last_snapshot_tick,
        reopened=base.reopened,
        rejudge=base.rejudge or rejudge,
    )


def _apply_skimmed(
    state: CallState | None, chunk: SkimmedChunk, position: SourcePosition | None
) -> tuple[CallState | None, tuple[Output, ...]]:
    """``apply`` of a skimmed chunk, the worker's hot path (most of its events): the same
    rules as the general path above with what a chunk cannot be (a lifecycle event) left out.
    ``test_skimmed_fold.py`` checks that it folds every call into the same state and outputs
    as the general path folds the whole chunks."""
    base = state if state is not None else CallState(call_key=chunk.call_key)
    current = base.leg(chunk.leg_id)
    leg = current if current is not None else LegFacts(leg_id=chunk.leg_id, side=chunk.leg)
    new_leg = _audio_facts(chunk, leg, chunk.packet_count, chunk.payload_bytes)
    known = base.first_audio
    first_audio = known
    if position is not None:
        here = (position.partition, position.offset)
        if known is None or here < known:
            first_audio = here
    added = new_leg is not current  # a duplicate chunk returns its leg as it was
    if not added and first_audio is known:
        return state, ()
    terminal = base.verdict is not None
    publish_now = first_audio is not known and not terminal
    publishable = terminal or new_leg.start is not None or base.has_start
    published = publish_now and publishable
    folded = _folded(base, new_leg, first_audio, chunk.event_time_us, position, published,
                     terminal and added)
    if not added:
        return folded, (SNAPSHOT,) if published else ()
    tally = AudioAdded(chunk.producer_id, chunk.payload_bytes, chunk.packet_count,
                       chunk.packets_lost)
    return folded, (tally, SNAPSHOT) if published else (tally,)


def publish(state: CallState, tick_at: int | None = None) -> CallState:
    """The state as of its next snapshot: one version more, nothing left unpublished."""
    return replace(
        state,
        version=state.version + 1,
        unpublished=False,
        last_snapshot_tick=tick_at if tick_at is not None else state.last_snapshot_tick,
    )


def _first_audio(state: CallState, position: SourcePosition | None) -> tuple[int, int] | None:
    known: tuple[int, int] | None = state.first_audio
    if position is None:
        return known
    here = (position.partition, position.offset)
    return here if state.first_audio is None else min(state.first_audio, here)


def _audio_added(chunk: AudioChunk, payload_bytes: int) -> AudioAdded:
    return AudioAdded(chunk.producer_id, payload_bytes, len(chunk.packets), chunk.packets_lost)


@singledispatch
def _fold_leg(event: CallEvent, leg: LegFacts) -> LegFacts:
    raise TypeError(f"no rule folds {type(event).__name__}: admission.refusal lets it through")


@_fold_leg.register
def _started(event: LegStarted, leg: LegFacts) -> LegFacts:
    start = LegStart(
        event_id=str(event.event_id),
        at=micros(event.event_time),
        recorder_id=event.recorder_id,
        recorder_incarnation=event.recorder_incarnation,
        codec=event.codec,
        media_direction=event.media_direction,
        session_expires_s=event.session_expires_s,
        cluster_id=event.cluster_id,
        refci=event.refci,
        destination=event.destination,
        near_end_addr=event.near_end_addr,
        near_end_device=event.near_end_device,
        far_end_addr=event.far_end_addr,
        far_end_device=event.far_end_device,
        far_end_guid=event.far_end_guid,
    )
    # A re-sent LegStarted (spool replay with a new event id) must not move the leg: keep the
    # earliest, so every arrival order picks the same one.
    if leg.start is not None and (leg.start.at, leg.start.event_id) <= (start.at, start.event_id):
        return leg
    return replace(leg, start=start)


@_fold_leg.register
def _updated(event: LegUpdated, leg: LegFacts) -> LegFacts:
    at = micros(event.event_time)
    event_id = str(event.event_id)
    # RFC 4028: any re-INVITE or UPDATE refreshes the session, not only a bare refresh.
    refreshed = at if leg.last_refresh_at is None else max(at, leg.last_refresh_at)
    new = replace(leg, last_refresh_at=refreshed)
    on_hold = _hold_state(event)
    if on_hold is not None:
        mark = Mark(at, event_id, (on_hold,))
        if mark.newer_than(leg.hold):
            new = replace(new, hold=mark)
    if event.session_expires_s is not None:
        mark = Mark(at, event_id, (event.session_expires_s,))
        if mark.newer_than(leg.session):
            new = replace(new, session=mark)
    if event.change == LegChange.PARTY_CHANGE or event.far_end_addr or event.far_end_device:
        mark = Mark(at, event_id, (event.far_end_addr, event.far_end_device))
        if mark.newer_than(leg.party):
            new = replace(new, party=mark)
    return new


def _hold_state(event: LegUpdated) -> bool | None:
    if event.change == LegChange.HOLD or event.media_direction in HOLD_DIRECTIONS:
        return True
    if event.change == LegChange.RESUME or event.media_direction in MEDIA_DIRECTIONS:
        return False
    return None


@_fold_leg.register
def _ended(event: LegEnded, leg: LegFacts) -> LegFacts:
    end = LegEnd(
        event_id=str(event.event_id),
        at=micros(event.event_time),
        reason=event.reason.value,
        packets_received=event.packets_received,
        packets_lost=event.packets_lost,
        payload_bytes=event.payload_bytes,
        chunk_count=event.chunk_count,
    )
    if leg.end is not None and (leg.end.at, leg.end.event_id) <= (end.at, end.event_id):
        return leg
    return replace(leg, end=end)


@_fold_leg.register
def _audio(event: AudioChunk, leg: LegFacts) -> LegFacts:
    if leg.audio.has(event.chunk_seq):
        return leg
    return _audio_facts(event, leg, len(event.packets), sum(len(p.payload) for p in event.packets))


def _audio_facts(
    event: AudioChunk | SkimmedChunk, leg: LegFacts, packet_count: int, payload_bytes: int
) -> LegFacts:
    seq = event.chunk_seq
    tally = leg.audio
    if tally.has(seq):
        return leg
    contiguous, above = tally.contiguous, tally.above
    if seq == contiguous:
        contiguous += 1
        while contiguous in above:
            above = above - {contiguous}
            contiguous += 1
    else:
        above = above | {seq}
    at = event_micros(event)
    producer = event.producer_id
    audio = AudioTally(
        contiguous=contiguous,
        above=above,
        packets_received=tally.packets_received + packet_count,
        packets_lost=tally.packets_lost + event.packets_lost,
        payload_bytes=tally.payload_bytes + payload_bytes,
        last_chunk_seq=max(seq, tally.last_chunk_seq),
        last_audio_at=at if tally.last_audio_at is None else max(at, tally.last_audio_at),
        producer_id=producer if tally.producer_id is None else min(producer, tally.producer_id),
    )
    return LegFacts(leg.leg_id, leg.side, leg.start, leg.end, leg.closure, leg.hold, leg.session,
                    leg.party, leg.last_refresh_at, audio)
