"""What the pure core asks its adapter to do: publish a snapshot, count something, evict."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Evict:
    """Drop the terminal call from the table: its retention for late events is over."""


Output = Snapshot | Tally | Evict
SNAPSHOT = Snapshot()
EVICT = Evict()
