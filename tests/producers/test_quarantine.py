"""The quarantine file: what it keeps reads back whole, and a line cut short by a crash is
skipped without losing the records around it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from callrec.producers.quarantine import (
    Quarantine,
    from_line,
    quarantined,
    read_quarantined,
    to_line,
)

AT = datetime(2026, 12, 2, 1, 50, tzinfo=UTC)


@given(key=st.binary(max_size=64), value=st.binary(max_size=4096), seq=st.integers(1, 2**62),
       error=st.text(max_size=50))
def test_a_line_reads_back_as_the_record(key: bytes, value: bytes, seq: int, error: str) -> None:
    record = quarantined(seq, "rec.audio.v1", "callrec.v1.AudioChunk", key, value, error, AT)
    line = to_line(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert from_line(line) == record
    assert record.size == len(value) and record.sha256 == hashlib.sha256(value).hexdigest()


def test_a_torn_line_is_skipped(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path / "quarantine")
    first = quarantined(1, "t", "e", b"k", b"one", "refused", AT)
    last = quarantined(3, "t", "e", b"k", b"three", "refused", AT)
    quarantine.keep(first)
    with quarantine.path.open("ab") as file:
        file.write(to_line(quarantined(2, "t", "e", b"k", b"two", "refused", AT))[:30] + b"\n")
    quarantine.keep(last)
    assert list(read_quarantined(quarantine.path)) == [first, last]
    assert quarantine.count == 2
    assert quarantine.path.stat().st_mode & 0o777 == 0o600
