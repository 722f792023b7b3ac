"""The calls the mixer holds and when each is ready to mix: the worker's rules, without I/O.

A call is mixed once its CallRecord is terminal, the worker has read its audio partition to the
end, and every chunk the record counts is spooled (or the wait for stragglers is over). A call
already archived comes back when a newer CallRecord version arrives (it reopened after a hold
longer than the segment window, its recorder published late audio): its earlier audio then lies
before the mixer's committed offsets, so it is read back from the record's first audio offset
before the new version of the recording is mixed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import Enum

from callrec.avro.events import CallRecord, CallStatus

TERMINAL = (CallStatus.COMPLETED, CallStatus.ABNORMAL)


@dataclass(frozen=True)
class Archived:
    """The newest recording announced for a call: what its next recording supersedes."""

    call_version: int
    version_id: str | None


def reopens(archived: Archived | None, record: CallRecord) -> bool:
    """A snapshot newer than the recorded one: the call has more (or other) facts than it had."""
    return archived is not None and record.version > archived.call_version


class Next(Enum):
    WAIT = "wait"
    REREAD = "reread"
    MIX = "mix"
    MIX_INCOMPLETE = "mix incomplete"


@dataclass
class OpenCall:
    key: str
    partition: int
    record: CallRecord | None = None
    chunks: set[tuple[str, int]] = field(default_factory=set)
    ended_at: float | None = None
    """Monotonic time the newest terminal record arrived; None while the call is ACTIVE."""
    task: asyncio.Task[None] | None = None
    not_before: float = 0.0
    previous: Archived | None = None
    """The recording the next one supersedes (a reopened call), None for a first recording."""
    reread_pending: bool = False
    """The call's earlier audio lies before the worker's offsets: read it back before mixing."""

    def take_record(self, record: CallRecord, now: float) -> None:
        """Keep the newest snapshot; a reopened (ACTIVE again) call is no longer ended."""
        if self.record is not None and record.version < self.record.version:
            return
        self.record = record
        if record.status not in TERMINAL:
            self.ended_at = None
        elif self.ended_at is None:
            self.ended_at = now

    def complete(self) -> bool:
        """Every chunk the CallRecord counts is here (chunk_seq 0..last_chunk_seq of each leg)."""
        assert self.record is not None
        return all(
            all((leg.leg_id, seq) in self.chunks for seq in range(leg.last_chunk_seq + 1))
            for leg in self.record.legs
        )

    def next_step(self, now: float, caught_up: bool, complete_wait_s: float) -> Next:
        """What the worker does with the call now (it has no task running)."""
        if self.record is None or self.ended_at is None or now < self.not_before:
            return Next.WAIT
        if not caught_up:
            return Next.WAIT  # chunks the record does not count yet may still be on their way
        if self.reread_pending:
            return Next.REREAD
        if self.complete():
            return Next.MIX
        return Next.MIX_INCOMPLETE if now - self.ended_at >= complete_wait_s else Next.WAIT
