import time
from pathlib import Path

import pytest

from callrec.producers.errors import SpoolFull
from callrec.producers.spool import SEGMENT_SUFFIX, Spool


def fill(spool: Spool, n: int) -> None:
    for i in range(n):
        spool.append("rec.audio.v1", f"k{i}".encode(), "AudioChunk", bytes([i % 256]) * 100)


def drain(spool: Spool) -> list[int]:
    seqs = []
    while (record := spool.read_next()) is not None:
        seqs.append(record.seq)
    return seqs


def test_records_come_back_in_order_with_their_content(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6, segment_bytes=1000)
    fill(spool, 30)
    first = spool.read_next()
    assert first is not None
    assert (first.topic, first.key, first.event_type) == ("rec.audio.v1", b"k0", "AudioChunk")
    assert first.value == b"\0" * 100
    assert drain(spool) == list(range(1, 30))
    fill(spool, 2)
    assert drain(spool) == [30, 31]


def test_acknowledged_records_are_forgotten_and_the_rest_replayed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6, segment_bytes=1000)
    fill(spool, 30)
    records = []
    while (r := spool.read_next()) is not None:
        records.append(r)
    for r in records[:20]:
        spool.ack(r.seq, r.size)
    assert spool.pending_bytes == sum(r.size for r in records[20:])
    spool.close()
    assert len(list(tmp_path.glob(f"*{SEGMENT_SUFFIX}"))) < 10
    again = Spool(tmp_path, max_bytes=10**6, segment_bytes=1000)
    assert drain(again) == list(range(20, 30))
    assert again.pending_bytes == spool.pending_bytes
    again.append("t", b"", "X", b"v")
    assert drain(again) == [30]


def test_a_torn_tail_is_cut(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6)
    fill(spool, 3)
    spool.close()
    [segment] = tmp_path.glob(f"*{SEGMENT_SUFFIX}")
    segment.write_bytes(segment.read_bytes()[:-7])
    assert drain(Spool(tmp_path, max_bytes=10**6)) == [0, 1]


def test_bounded(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    with pytest.raises(SpoolFull):
        fill(spool, 100)
    assert spool.pending_bytes <= 1000


def test_rewind_reads_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6, segment_bytes=500)
    fill(spool, 10)
    drain(spool)
    spool.rewind(4)
    assert drain(spool) == list(range(4, 10))


def test_the_age_of_the_oldest_unacknowledged_record(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6, segment_bytes=500)
    assert spool.oldest_pending_age_ms() == 0
    fill(spool, 10)
    time.sleep(0.05)
    assert spool.oldest_pending_age_ms() >= 50
    records = []
    while (r := spool.read_next()) is not None:
        records.append(r)
    for r in records[:7]:
        spool.ack(r.seq, r.size)
    spool.close()
    again = Spool(tmp_path, max_bytes=10**6, segment_bytes=500)
    assert again.oldest_pending_age_ms() >= 50
    for r in records[7:]:
        again.ack(r.seq, r.size)
    assert again.oldest_pending_age_ms() == 0
