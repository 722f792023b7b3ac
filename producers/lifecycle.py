"""When the recorder ends a leg on its own (pure: the caller passes the clock and the last audio).

CUCM ends a leg with BYE; these rules end the legs it never ends, so none holds its RTP port
forever: a session not refreshed within its Session-Expires (RFC 4028), a leg whose sender
stopped RTP (not on hold) for ``media_timeout_s``, and a leg older than ``max_duration_s``
(a leg without Session-Expires that still streams would otherwise never end). The recorder sends
the BYE and says why in LegEnded (``reason`` and, as text, ``sip_reason``).
"""

from __future__ import annotations

from dataclasses import dataclass

from callrec.avro.events import LegEndReason
from callrec.producers.leg import LegState

EARLY_PACKETS = 100
"""RTP that beats the ACK is kept until the codec is known (~2 s of 20 ms packets); the rest is
dropped: a leg never acknowledged must not grow without bound."""


@dataclass(frozen=True)
class LegLimits:
    media_timeout_s: float
    """No RTP for this long on a leg that is not on hold ends it; 0 turns the rule off."""
    max_duration_s: float
    """A leg older than this ends whatever it does; 0 turns the rule off."""


@dataclass(frozen=True)
class EndDecision:
    reason: LegEndReason
    why: str
    """Said in LegEnded.sip_reason and in the log."""


def due_end(
    leg: LegState, media_seen_us: int, now_us: int, limits: LegLimits
) -> EndDecision | None:
    """The rule that ends the leg now, if one does.

    ``media_seen_us`` is the leg's last sign of media: its last RTP datagram, its start, or its
    last offer/answer (a resume from hold restarts the clock). A leg not started yet (no ACK)
    has no media to wait for; only its age counts. The session rule goes first: it is the one
    CUCM itself agreed to.
    """
    if leg.expired(now_us):
        return EndDecision(
            LegEndReason.SESSION_EXPIRED,
            f"no session refresh within {leg.session_expires_s} s",
        )
    limit_us = int(limits.max_duration_s * 1_000_000)
    if limit_us and now_us - leg.opened.at_us > limit_us:
        return EndDecision(
            LegEndReason.OTHER, f"maximum leg duration of {limits.max_duration_s:g} s reached"
        )
    timeout_us = int(limits.media_timeout_s * 1_000_000)
    if timeout_us and leg.started and not leg.on_hold and now_us - media_seen_us > timeout_us:
        return EndDecision(LegEndReason.MEDIA_TIMEOUT, f"no RTP for {limits.media_timeout_s:g} s")
    return None


def keep_early(held: int) -> bool:
    """Whether RTP arriving before the leg started is kept (replayed once it starts)."""
    return held < EARLY_PACKETS
