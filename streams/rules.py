"""Thresholds of the call rules, a plain value the pure core takes (built from the settings)."""

from __future__ import annotations

from dataclasses import dataclass

SECOND_US = 1_000_000


@dataclass(frozen=True, slots=True)
class Rules:
    media_timeout_s: float = 8.0
    """An open leg not on hold with no audio for this long ends the call as MEDIA_TIMEOUT."""
    recorder_lost_after_s: float = 5.0
    """A recorder silent this long (5 missed 1 s heartbeats) has lost its open legs."""
    half_call_window_s: float = 5.0
    """A segment whose other leg has not started this long after the first is a HALF_CALL."""
    segment_window_s: float = 5.0
    """After every leg ended, wait this long for a new INVITE pair (hold) before the verdict."""
    missing_chunks_wait_s: float = 60.0
    """After every leg ended, wait up to this long for chunks the LegEnded events announced."""
    session_grace_s: float = 2.0
    """Slack after Session-Expires before SESSION_EXPIRED (the refresh may be in flight)."""
    audio_snapshot_interval_s: float = 5.0
    """Audio progress alone publishes a snapshot at most this often."""
    terminal_retention_s: float = 3600.0
    """A terminal call stays in the table this long for late events, then is evicted."""

    def us(self, seconds: float) -> int:
        return int(seconds * SECOND_US)
