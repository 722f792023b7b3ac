"""A replica-local memory cache of whole recordings, each verified against its archived sha256.

A seeking player asks for a new Range every few seconds, and several people may listen to the
same call: without a cache every one of those requests waits on the object store. A recording
is immutable once archived (object lock; the read model names its object version and sha256),
so a copy whose bytes hash to the sha256 the read model holds *is* the recording, and can serve
any range of it for as long as the read model names that same identity.

Why it cannot serve anything stale or wrong:
- an entry is admitted only if its length is the archived size and its sha256 the archived one
  (bytes of another version, a truncated read or a tampered object are refused);
- it is looked up by the identity the read model names *now* (bucket, key, version id, sha256,
  size): a call re-archived as a new object version has a new identity, and its old entry is
  never served again (it ages out of the LRU);
- an entry lives at most ``max_age_s`` (a recording erased from the store after its retention
  stops being served from memory within that bound).

Memory only, never disk: recordings are sensitive, and the store is where they rest (locked,
audited). The cache is bounded by a byte budget; an object larger than ``object_max_bytes`` is
never cached (an 8-hour call streams from the store as before). Access control and the audit
are unchanged: a cached byte is sent only after the same authorization and the same
Kafka-acknowledged access event as an uncached one.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    """What the read model says a recording is: the cache key and what admission checks."""

    bucket: str
    object_key: str
    version_id: str | None
    sha256: str
    size: int


@dataclass
class CacheStats:
    entries: int = 0
    bytes: int = 0
    hits: int = 0
    misses: int = 0
    filled: int = 0
    refused: int = 0
    """Fills whose bytes did not match the archived size or sha256 (never cached)."""
    evicted: int = 0
    expired: int = 0


class RecordingCache:
    """LRU of verified whole recordings under a byte budget; pure (the clock is passed in)."""

    def __init__(self, budget_bytes: int, object_max_bytes: int, max_age_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget_bytes = budget_bytes
        self.object_max_bytes = min(object_max_bytes, budget_bytes)
        self.max_age_s = max_age_s
        self.clock = clock
        self.stats = CacheStats()
        self._entries: OrderedDict[Identity, tuple[bytes, float]] = OrderedDict()

    def admits(self, ident: Identity) -> bool:
        """Whether a recording of this size may be cached at all."""
        return 0 < ident.size <= self.object_max_bytes

    def __contains__(self, ident: Identity) -> bool:
        return ident in self._entries

    def get(self, ident: Identity) -> bytes | None:
        """The recording's bytes, or None (not cached, or older than ``max_age_s``)."""
        found = self._entries.get(ident)
        if found is None:
            self.stats.misses += 1
            return None
        body, stored_at = found
        if self.clock() - stored_at > self.max_age_s:
            self._drop(ident)
            self.stats.expired += 1
            self.stats.misses += 1
            return None
        self._entries.move_to_end(ident)
        self.stats.hits += 1
        return body

    def put(self, ident: Identity, body: bytes, sha256: str) -> bool:
        """Admit ``body`` if it is exactly the recording ``ident`` names (``sha256`` is the
        digest of ``body``, computed by the caller off the event loop); evict the least
        recently used entries to stay within the budget. False if refused."""
        if not self.admits(ident):
            return False
        if len(body) != ident.size or sha256 != ident.sha256:
            self.stats.refused += 1
            return False
        if ident in self._entries:
            self._drop(ident)
        while self._entries and self.stats.bytes + len(body) > self.budget_bytes:
            self._drop(next(iter(self._entries)))
            self.stats.evicted += 1
        self._entries[ident] = (body, self.clock())
        self.stats.bytes += len(body)
        self.stats.entries = len(self._entries)
        self.stats.filled += 1
        return True

    def _drop(self, ident: Identity) -> None:
        body, _ = self._entries.pop(ident)
        self.stats.bytes -= len(body)
        self.stats.entries = len(self._entries)
