"""The recording cache's rules, without servers: only bytes that are exactly the archived
recording are admitted, lookups go by the identity the read model names now, the byte budget
holds, an entry is not served past its age bound, and cache fills give way to clients."""

from __future__ import annotations

import asyncio
import hashlib

from minio import Minio

from callrec.api.ranged_get import RangeReader
from callrec.api.recording_cache import Identity, RecordingCache


def recording(n: int, size: int = 100) -> tuple[Identity, bytes]:
    body = bytes([n % 256]) * size
    return Identity("b", f"rec/{n}.wav", f"v{n}", hashlib.sha256(body).hexdigest(),
                    size), body


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_only_the_archived_bytes_are_admitted() -> None:
    cache = RecordingCache(1000, 1000, 60)
    ident, body = recording(1)
    other = bytes([9]) * 100
    assert not cache.put(ident, other, hashlib.sha256(other).hexdigest())  # another object
    assert not cache.put(ident, body[:-1], hashlib.sha256(body[:-1]).hexdigest())  # truncated
    assert cache.get(ident) is None and cache.stats.refused == 2
    assert cache.put(ident, body, hashlib.sha256(body).hexdigest())
    assert cache.get(ident) == body and cache.stats.hits == 1


def test_a_new_object_version_is_a_miss_not_the_old_bytes() -> None:
    cache = RecordingCache(1000, 1000, 60)
    ident, body = recording(1)
    cache.put(ident, body, ident.sha256)
    rearchived = Identity(ident.bucket, ident.object_key, "v2", "f" * 64, ident.size)
    assert cache.get(rearchived) is None
    same_version_new_sha = Identity(ident.bucket, ident.object_key, ident.version_id,
                                    "f" * 64, ident.size)
    assert cache.get(same_version_new_sha) is None


def test_the_byte_budget_evicts_the_least_recently_used() -> None:
    cache = RecordingCache(300, 300, 60)
    (a, body_a), (b, body_b), (c, body_c), (d, body_d) = (recording(n) for n in range(4))
    for ident, body in ((a, body_a), (b, body_b), (c, body_c)):
        assert cache.put(ident, body, ident.sha256)
    assert cache.get(a) == body_a  # a is now the most recent; b the least
    assert cache.put(d, body_d, d.sha256)
    assert b not in cache and a in cache and c in cache and d in cache
    assert (cache.stats.bytes, cache.stats.entries, cache.stats.evicted) == (300, 3, 1)


def test_objects_over_the_limit_or_empty_are_never_cached() -> None:
    cache = RecordingCache(10_000, 150, 60)
    big, body = recording(1, size=151)
    assert not cache.admits(big) and not cache.put(big, body, big.sha256)
    empty = Identity("b", "k", None, hashlib.sha256(b"").hexdigest(), 0)
    assert not cache.admits(empty)
    assert not RecordingCache(0, 1000, 60).admits(recording(2)[0])  # budget 0: no cache


def test_an_entry_is_not_served_past_its_age() -> None:
    clock = Clock()
    cache = RecordingCache(1000, 1000, 60, clock)
    ident, body = recording(1)
    cache.put(ident, body, ident.sha256)
    clock.now = 60.0
    assert cache.get(ident) == body
    clock.now = 60.5
    assert cache.get(ident) is None
    assert ident not in cache and cache.stats.bytes == 0 and cache.stats.expired == 1


def test_putting_the_same_recording_again_keeps_the_count_right() -> None:
    cache = RecordingCache(1000, 1000, 60)
    ident, body = recording(1)
    cache.put(ident, body, ident.sha256)
    cache.put(ident, body, ident.sha256)
    assert (cache.stats.entries, cache.stats.bytes) == (1, 100)


class GatedReader(RangeReader):
    """A RangeReader whose store reads wait for the test to let them finish: what is tested
    is who waits for whom, not the store."""

    def __init__(self) -> None:
        super().__init__(Minio("127.0.0.1:9", "k", "s", secure=False), 4)
        self.gate = asyncio.Event()

    async def _read(self, bucket: str, key: str, version_id: str | None, start: int,
                    length: int) -> bytes:
        await self.gate.wait()
        return b"x" * length


async def test_fills_wait_while_a_client_waits_on_a_read() -> None:
    reader = GatedReader()
    await asyncio.wait_for(reader.quiet(), 1)  # nothing read yet: quiet
    client = asyncio.create_task(reader.read("b", "k", None, 0, 10))
    background = asyncio.create_task(reader.read("b", "k", None, 0, 10, background=True))
    fill = asyncio.create_task(reader.quiet())
    await asyncio.sleep(0.05)
    assert not fill.done()  # a client waits: the fill gives way
    reader.gate.set()
    await asyncio.wait_for(fill, 1)
    assert client.done() and await client == b"x" * 10 and await background == b"x" * 10
