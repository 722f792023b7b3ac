"""What the pure core asks its adapter to do: publish a snapshot, count something, evict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Publish the state's CallRecord (its version was already bumped)."""


@dataclass(frozen=True, slots=True)
class Tally:
    """Add ``value`` to a windowed counter."""

    metric: str
    labels: Labels
    value: float


class AudioAdded(NamedTuple):
    """A chunk new to its leg: what it adds to its recorder's audio counters.

    One per chunk, summed per batch into the ``audio_*`` tallies (``metrics.audio_tallies``):
    three ``Tally`` objects per chunk were a measurable share of the worker (a NamedTuple costs
    a tuple)."""

    recorder: str
    payload_bytes: int
    packets: int
    packets_lost: int


@dataclass(frozen=True, slots=True)
class Evict:
    """Drop the terminal call from the table: its retention for late events is over."""


Output = Snapshot | Tally | AudioAdded | Evict
SNAPSHOT = Snapshot()
EVICT = Evict()
