"""CallState -> CallRecord: the public snapshot, with legs grouped into segments.

Segments are derived from the legs' times, not from arrival order or from the recorders' own
``segment`` numbers (two recorders behind a Circular route group each see only their own leg):
a leg that starts after every earlier leg has ended opens a new segment (CUCM's hold: BYE on
both legs, then a new INVITE pair with the same x-refci).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import NamedTuple

from callrec.avro.events import CallRecord, Leg, LegSummary
from callrec.streams.model import CallState, LegFacts, LegStart

SNAPSHOT_NAMESPACE = uuid.UUID("6f1c3c1e-4a53-4b0e-9a8e-2f7c1d1b5a10")
"""Snapshot ids are uuid5(call key, version): a republished snapshot keeps its id."""


def at_time(micros: int) -> datetime:
    return datetime.fromtimestamp(micros // 1_000_000, UTC).replace(microsecond=micros % 1_000_000)


def leg_started_at(leg: LegFacts, fallback: int) -> int:
    started: int | None = leg.start.at if leg.start is not None else leg.first_seen_at
    return started if started is not None else fallback


def leg_ended_at(leg: LegFacts) -> int | None:
    ended: int | None = None
    if leg.end is not None:
        ended = leg.end.at
    elif leg.closure is not None:
        ended = leg.closure.at
    return ended


def segments(state: CallState) -> list[tuple[int, LegFacts]]:
    """Every leg with its segment number, in start order."""
    fallback = state.first_seen_at or 0
    ordered = sorted(state.legs, key=lambda leg: (leg_started_at(leg, fallback), leg.leg_id))
    numbered: list[tuple[int, LegFacts]] = []
    segment = 0
    latest_end: int | None = None
    all_ended = True
    for leg in ordered:
        started = leg_started_at(leg, fallback)
        if numbered and all_ended and latest_end is not None and started >= latest_end:
            segment += 1
        numbered.append((segment, leg))
        ended = leg_ended_at(leg)
        if ended is None:
            all_ended = False
        else:
            latest_end = ended if latest_end is None else max(latest_end, ended)
    return numbered


def call_recorder(state: CallState) -> str:
    """The recorder a call's metrics count under: the near end's, else any leg's."""
    starts = sorted(
        (leg.side != Leg.NEAR_END, leg.start.at, leg.start.recorder_id)
        for leg in state.legs
        if leg.start is not None
    )
    if starts:
        recorder: str = starts[0][2]
        return recorder
    producers = sorted(leg.audio.producer_id for leg in state.legs if leg.audio.producer_id)
    return producers[0] if producers else "unknown"


class Heading(NamedTuple):
    """What a snapshot says of the call as a whole, derived from its legs (shared by
    ``to_record`` and the snapshot writer, snapshot_codec.py)."""

    numbered: list[tuple[int, LegFacts]]
    first: LegStart | None
    """The start of the near end's earliest leg, else of the earliest leg."""
    cluster_id: str
    refci: str
    far_end_addr: str | None
    far_end_device: str | None
    started_at: int
    fallback: int


def heading(state: CallState) -> Heading:
    starts = sorted(
        (leg.side != Leg.NEAR_END, leg.start.at, leg.leg_id, leg.start)
        for leg in state.legs
        if leg.start is not None
    )
    first = starts[0][3] if starts else None
    cluster_id, _, refci = state.call_key.rpartition(":")
    far_addr, far_device = (first.far_end_addr, first.far_end_device) if first else (None, None)
    party_marks = [leg.party for leg in state.legs if leg.party is not None]
    if party_marks:
        latest = max(party_marks, key=lambda mark: (mark.at, mark.event_id))
        far_addr = latest.value[0] if isinstance(latest.value[0], str) else far_addr
        far_device = latest.value[1] if isinstance(latest.value[1], str) else far_device
    fallback = state.first_seen_at or 0
    return Heading(
        segments(state), first, first.cluster_id if first else cluster_id,
        first.refci if first else refci, far_addr, far_device,
        min((s[1] for s in starts), default=fallback), fallback,
    )


def snapshot_id(state: CallState) -> uuid.UUID:
    return uuid.uuid5(SNAPSHOT_NAMESPACE, f"{state.call_key}#{state.version}")


def end_reason(leg: LegFacts) -> str | None:
    if leg.end is not None:
        return leg.end.reason
    return leg.closure.reason.value if leg.closure is not None else None


def to_record(state: CallState, producer_id: str) -> CallRecord:
    """The snapshot of the state at its current version (the contract's model; the worker
    writes the same bytes without it: snapshot_codec.py)."""
    head = heading(state)
    first, numbered, fallback = head.first, head.numbered, head.fallback
    verdict = state.verdict
    return CallRecord(
        event_id=snapshot_id(state),
        event_time=at_time(state.newest_fact_at or fallback),
        producer_id=producer_id,
        call_key=state.call_key,
        version=state.version,
        status=state.status,
        abnormal_reason=verdict.reason if verdict else None,
        abnormal_detail=verdict.detail if verdict else None,
        cluster_id=head.cluster_id,
        refci=head.refci,
        near_end_addr=first.near_end_addr if first else None,
        near_end_device=first.near_end_device if first else None,
        far_end_addr=head.far_end_addr,
        far_end_device=head.far_end_device,
        far_end_guid=first.far_end_guid if first else None,
        destination=first.destination if first else None,
        started_at=at_time(head.started_at),
        ended_at=at_time(verdict.ended_at) if verdict else None,
        segments=(numbered[-1][0] + 1) if numbered else 1,
        legs=[_summary(segment, leg, fallback) for segment, leg in numbered],
        first_audio_partition=state.first_audio[0] if state.first_audio else None,
        first_audio_offset=state.first_audio[1] if state.first_audio else None,
        reopened=state.reopened,
    )


def _summary(segment: int, leg: LegFacts, fallback: int) -> LegSummary:
    ended = leg_ended_at(leg)
    start = leg.start
    return LegSummary(
        leg=leg.side,
        leg_id=leg.leg_id,
        segment=segment,
        recorder_id=start.recorder_id if start else (leg.audio.producer_id or ""),
        recorder_incarnation=start.recorder_incarnation if start else "",
        codec=start.codec if start else "",
        started_at=at_time(leg_started_at(leg, fallback)),
        ended_at=at_time(ended) if ended is not None else None,
        end_reason=end_reason(leg),
        on_hold=leg.on_hold,
        chunk_count=leg.audio.chunk_count,
        last_chunk_seq=leg.audio.last_chunk_seq,
        packets_received=leg.audio.packets_received,
        packets_lost=leg.audio.packets_lost,
        payload_bytes=leg.audio.payload_bytes,
        last_audio_at=at_time(leg.audio.last_audio_at) if leg.audio.last_audio_at else None,
    )
