"""The spool on a disk of the test's own (a small tmpfs) that fills up and then has room again."""

from pathlib import Path

import pytest

from callrec.producers.errors import SpoolFull
from callrec.producers.spool import SEGMENT_SUFFIX, Spool, SpooledRecord
from tests.disks import SmallDisk, fill_disk


def put(spool: Spool, first: int, n: int) -> None:
    for i in range(first, first + n):
        spool.append("rec.audio.v1", f"k{i}".encode(), "AudioChunk", bytes([i % 256]) * 300)


def read_all(spool: Spool) -> list[SpooledRecord]:
    records = []
    while (record := spool.read_next()) is not None:
        records.append(record)
    return records


def segment_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob(f"*{SEGMENT_SUFFIX}"))


def test_a_full_disk_tears_nothing_and_loses_nothing(small_disk: SmallDisk) -> None:
    disk = small_disk(256 * 1024)
    spool = Spool(disk / "spool", max_bytes=10**7, memory_bytes=10**6)
    put(spool, 0, 5)
    filler = fill_disk(disk)
    put(spool, 5, 100)  # ~34 KB: past the last page the segment had
    assert spool.disk_problem == "disk full" and spool.held_bytes > 0
    # whole records only on disk: a write the disk cut short was cut back
    assert segment_bytes(disk / "spool") == spool.pending_bytes - spool.held_bytes
    records = read_all(spool)
    assert [r.seq for r in records] == list(range(105))
    assert all(r.value == bytes([r.seq % 256]) * 300 for r in records)
    for r in records[:95]:  # Kafka took these, some of them from memory
        spool.ack(r.seq, r.size)
    assert spool.held_bytes == sum(r.size for r in records[95:])
    spool.checkpoint()  # no room for the watermark: tried again later, no crash

    spool.retry_disk()
    assert spool.disk_problem == "disk full"  # still no room: stays in memory
    filler.unlink()
    spool.retry_disk()
    assert (spool.disk_problem, spool.held_bytes) == (None, 0)
    put(spool, 105, 3)
    assert [r.seq for r in read_all(spool)] == [105, 106, 107]  # the rest was read before
    spool.close()

    again = Spool(disk / "spool", max_bytes=10**7)
    replayed = read_all(again)
    assert [r.seq for r in replayed] == list(range(95, 108))
    assert all(r.value == bytes([r.seq % 256]) * 300 for r in replayed)


def test_memory_holds_records_only_within_its_budget(small_disk: SmallDisk) -> None:
    disk = small_disk(128 * 1024)
    spool = Spool(disk / "spool", max_bytes=10**7, memory_bytes=5000)
    fill_disk(disk)
    with pytest.raises(SpoolFull, match="disk full"):
        put(spool, 0, 100)
    assert 0 < spool.held_bytes <= 5000
    kept = read_all(spool)
    assert [r.seq for r in kept] == list(range(len(kept)))  # what was taken, in order
    assert spool.pending_bytes == sum(r.size for r in kept)
