"""The call state the fold keeps: facts per leg, merged so that their order does not matter.

Every field is a fact from an event (or the tick's verdict), merged by a rule that is commutative
and idempotent (min, max, union, "latest by event time, ties by event id"). That is what lets a
duplicate or an out-of-order event give the same call, and a replay rebuild it exactly. Times are
integer microseconds since the Unix epoch, like the Avro contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from callrec.avro.events import AbnormalReason, CallStatus, Leg


class SourcePosition(NamedTuple):
    """Where an event was read from; the call keeps the lowest audio position. (A NamedTuple:
    the worker makes one per record.)"""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class LegStart:
    """What a LegStarted said about the leg and the call."""

    event_id: str
    at: int
    recorder_id: str
    recorder_incarnation: str
    codec: str
    media_direction: str
    session_expires_s: int | None
    cluster_id: str
    refci: str
    destination: str
    near_end_addr: str | None
    near_end_device: str | None
    far_end_addr: str | None
    far_end_device: str | None
    far_end_guid: str | None


@dataclass(frozen=True, slots=True)
class LegEnd:
    """What a LegEnded said."""

    event_id: str
    at: int
    reason: str
    packets_received: int
    packets_lost: int
    payload_bytes: int
    chunk_count: int


@dataclass(frozen=True, slots=True)
class Mark:
    """A latest-wins fact (hold state, party change, session interval) with its ordering key."""

    at: int
    event_id: str
    value: tuple[str | int | bool | None, ...]

    def newer_than(self, other: Mark | None) -> bool:
        return other is None or (self.at, self.event_id) > (other.at, other.event_id)


@dataclass(frozen=True, slots=True)
class AudioTally:
    """Distinct chunks of a leg: every seq below ``contiguous`` plus the sparse ones above it.

    Chunk seqs are contiguous per leg, so in order the sparse set stays empty and the tally is
    a few integers however long the call; it still dedups on (leg_id, chunk_seq) exactly.
    """

    contiguous: int = 0
    above: frozenset[int] = frozenset()
    packets_received: int = 0
    packets_lost: int = 0
    payload_bytes: int = 0
    last_chunk_seq: int = -1
    last_audio_at: int | None = None
    producer_id: str | None = None

    @property
    def chunk_count(self) -> int:
        return self.contiguous + len(self.above)

    def has(self, chunk_seq: int) -> bool:
        return chunk_seq < self.contiguous or chunk_seq in self.above


@dataclass(frozen=True, slots=True)
class Closure:
    """The tick closed a still-open leg with the call's abnormal reason."""

    at: int
    reason: AbnormalReason


@dataclass(frozen=True, slots=True)
class LegFacts:
    leg_id: str
    side: Leg
    start: LegStart | None = None
    end: LegEnd | None = None
    closure: Closure | None = None
    hold: Mark | None = None
    session: Mark | None = None
    party: Mark | None = None
    last_refresh_at: int | None = None
    audio: AudioTally = AudioTally()

    @property
    def is_open(self) -> bool:
        return self.end is None and self.closure is None

    @property
    def on_hold(self) -> bool:
        return bool(self.hold.value[0]) if self.hold else False

    @property
    def session_expires_s(self) -> int | None:
        if self.session is not None:
            value = self.session.value[0]
            return value if isinstance(value, int) else None
        return self.start.session_expires_s if self.start else None

    @property
    def first_seen_at(self) -> int | None:
        times = [t for t in (self.start and self.start.at, self.end and self.end.at) if t]
        if self.audio.last_audio_at is not None:
            times.append(self.audio.last_audio_at)
        return min(times) if times else None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The call's terminal status as the tick judged it from the facts it had.

    Facts that arrive after it (a new segment after a hold, audio a stalled recorder published
    late, the heartbeats of a recorder that came back) make the tick judge the call again: it
    may reopen (no verdict) or get another verdict. Every field comes from facts, not from when
    the tick ran, so the live worker and a replay agree once both have the same facts.
    """

    status: CallStatus
    reason: AbnormalReason | None
    detail: str | None
    ended_at: int


@dataclass(frozen=True, slots=True)
class CallState:
    """A call's facts. ``fold.apply`` builds it field by field on its hot path (not with
    ``dataclasses.replace``): a new field must be carried over there too (a test checks)."""

    call_key: str
    partition: int | None = None
    legs: tuple[LegFacts, ...] = ()
    """Sorted by leg_id, so equal facts make equal states whatever their arrival order."""
    first_audio: tuple[int, int] | None = None
    """(partition, offset) of the call's first AudioChunk in rec.audio.v1."""
    first_seen_at: int | None = None
    newest_fact_at: int | None = None
    verdict: Verdict | None = None
    version: int = 0
    """Snapshots emitted so far; the next one carries version + 1."""
    unpublished: bool = False
    """Facts (audio progress) folded since the last snapshot, waiting for the throttle."""
    last_snapshot_tick: int = 0
    reopened: int = 0
    """Published verdicts later withdrawn or replaced because new facts arrived."""
    rejudge: bool = False
    """Facts folded since the verdict: the next tick judges the call again."""

    @property
    def status(self) -> CallStatus:
        return self.verdict.status if self.verdict else CallStatus.ACTIVE

    @property
    def is_terminal(self) -> bool:
        return self.verdict is not None

    @property
    def has_start(self) -> bool:
        return any(leg.start is not None for leg in self.legs)

    def leg(self, leg_id: str) -> LegFacts | None:
        for leg in self.legs:
            if leg.leg_id == leg_id:
                return leg
        return None

    def legs_with(self, facts: LegFacts) -> tuple[LegFacts, ...]:
        """The legs with ``facts`` replacing the leg of the same id, still sorted by id."""
        legs = list(self.legs)
        for i, leg in enumerate(legs):
            if leg.leg_id == facts.leg_id:
                legs[i] = facts
                return tuple(legs)
        legs.append(facts)
        legs.sort(key=lambda leg: leg.leg_id)
        return tuple(legs)
