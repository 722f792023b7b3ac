"""Limits on what one SIP peer may cost the recorder (pure: the caller passes the clock).

A recorder faces a few CUCM nodes, so every limit here is per peer address and generous for
CUCM; what it stops is one host (a misconfigured node, a scanner, a flood) taking the SIP
thread, the connection threads or the log disk from everyone else. The adapters (``sip_uas``,
``sip_tcp``) only ask and obey; the SIP thread and the TCP accept thread each own their object.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

PRUNE_ABOVE = 1024
"""Peers remembered by the INVITE limiter before those with a full bucket are forgotten."""


@dataclass
class _Bucket:
    tokens: float
    at: float


class InviteRate:
    """A token bucket per peer address: ``burst`` INVITEs at once, then ``rate`` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, peer: str, now: float) -> bool:
        """Take one token for ``peer`` if it has one; False means answer 503."""
        bucket = self._buckets.get(peer)
        if bucket is None:
            if len(self._buckets) >= PRUNE_ABOVE:
                self._prune(now)
            bucket = self._buckets[peer] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _prune(self, now: float) -> None:
        """A peer whose bucket has refilled is indistinguishable from a new one: forget it."""
        for peer, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.at) * self.rate >= self.burst:
                del self._buckets[peer]


class ConnectionCaps:
    """Open SIP/TCP connections, in total and per peer address; thread-safe (accept thread
    admits, each connection's thread releases)."""

    def __init__(self, total: int, per_peer: int) -> None:
        self.total = total
        self.per_peer = per_peer
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def admit(self, peer: str) -> str | None:
        """Count a new connection in, or say why it must be closed (and count nothing)."""
        with self._lock:
            if sum(self._open.values()) >= self.total:
                return f"{self.total} connections open"
            if self._open[peer] >= self.per_peer:
                return f"{self.per_peer} connections open from {peer}"
            self._open[peer] += 1
            return None

    def release(self, peer: str) -> None:
        with self._lock:
            self._open[peer] -= 1
            if self._open[peer] <= 0:
                del self._open[peer]

    @property
    def open(self) -> int:
        with self._lock:
            return sum(self._open.values())


class LogBudget:
    """At most ``per_minute`` lines per minute of one noisy kind; what is held back is counted
    and said in the next line that gets through, so the log stays small but nothing is hidden."""

    WINDOW_S = 60.0

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._window_start = float("-inf")
        self._spent = 0
        self.suppressed = 0

    def take(self, now: float) -> int | None:
        """None: do not log this one. Otherwise log it, with this many held back since the last."""
        if now - self._window_start >= self.WINDOW_S:
            self._window_start = now
            self._spent = 0
        if self._spent >= self.per_minute:
            self.suppressed += 1
            return None
        self._spent += 1
        held_back, self.suppressed = self.suppressed, 0
        return held_back
