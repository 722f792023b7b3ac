"""CUCM's OPTIONS-ping rules for one destination, as a pure state machine.

These rules decide which recorders get new INVITEs, so they are what makes failover work
(shared/cucm-recording.md, "Choosing a recorder"): no response (after the retransmissions), 408,
503 or a failed TCP connect marks a destination out of service; any other final response marks it
in service. The adapter sends what this decides and feeds back what came of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

UNAVAILABLE_STATUSES = frozenset({408, 503})


class State(StrEnum):
    UNKNOWN = "unknown"
    IN_SERVICE = "in-service"
    OUT_OF_SERVICE = "out-of-service"


@dataclass(frozen=True)
class PingTiming:
    """CUCM's SIP profile defaults; tests shorten them to detect a dead recorder in seconds."""

    in_service_interval_s: float = 60.0
    out_of_service_interval_s: float = 120.0
    retries: int = 6
    retry_interval_s: float = 0.5
    """How long one transmission waits for its response before it is retransmitted."""

    @property
    def detection_limit_s(self) -> float:
        """Longest a dead destination can stay in service: a whole interval plus the retries."""
        return self.in_service_interval_s + (self.retries + 1) * self.retry_interval_s


@dataclass(frozen=True)
class Response:
    status: int


@dataclass(frozen=True)
class NoResponse:
    """One transmission went unanswered for the retry interval."""


@dataclass(frozen=True)
class ConnectFailed:
    """The TCP connection to the destination could not be opened."""


Outcome = Response | NoResponse | ConnectFailed


@dataclass(frozen=True)
class DestinationState:
    state: State = State.UNKNOWN
    changed_at: float | None = None
    unanswered: int = 0
    """Transmissions of the current ping that got no response."""


@dataclass(frozen=True)
class Decision:
    destination: DestinationState
    next_ping_at: float
    retransmit: bool
    """Send the same OPTIONS again (a retry of this ping), not a new ping."""
    changed: bool


def on_ping(
    current: DestinationState, outcome: Outcome, now: float, timing: PingTiming
) -> Decision:
    """What a ping's outcome means for the destination, and when to ping it next."""
    if isinstance(outcome, NoResponse) and current.unanswered < timing.retries:
        # The transmission already waited retry_interval_s: retransmit at once.
        return Decision(replace(current, unanswered=current.unanswered + 1), now, True, False)
    available = isinstance(outcome, Response) and outcome.status not in UNAVAILABLE_STATUSES
    state = State.IN_SERVICE if available else State.OUT_OF_SERVICE
    changed = state is not current.state
    interval = timing.in_service_interval_s if available else timing.out_of_service_interval_s
    return Decision(
        DestinationState(state, now if changed else current.changed_at, 0),
        now + interval,
        retransmit=False,
        changed=changed,
    )
