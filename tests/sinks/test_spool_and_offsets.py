"""The spool's budgets and the offset ledger's rule: never commit past an open call's audio."""

from __future__ import annotations

from pathlib import Path

import pytest

from callrec.sinks.errors import SpoolFull
from callrec.sinks.offsets import PartitionLedger
from callrec.sinks.spool import Spool


def test_spool_spills_to_disk_and_gives_everything_back_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, memory_budget=250, disk_budget=10_000)
    for n in range(6):
        spool.add("A:1", n, bytes([n]) * 100, None)
    spool.add("B:2", 99, b"b" * 10, None)
    assert spool.memory_bytes <= 250 and spool.disk_bytes > 0
    assert spool.values("A:1") == [(n, bytes([n]) * 100, None) for n in range(6)]
    spool.discard("A:1")
    assert spool.values("A:1") == [] and spool.disk_bytes == 0
    assert not list(tmp_path.glob("*.spool"))
    assert spool.values("B:2") == [(99, b"b" * 10, None)]


def test_a_full_spool_refuses_and_stays_as_it_was(tmp_path: Path) -> None:
    spool = Spool(tmp_path, memory_budget=100, disk_budget=150)
    spool.add("A:1", 0, b"x" * 90, None)
    with pytest.raises(SpoolFull) as caught:
        spool.add("A:1", 1, b"y" * 90, None)
    assert caught.value.retriable
    assert spool.values("A:1") == [(0, b"x" * 90, None)]


def test_commit_waits_for_the_oldest_open_call() -> None:
    ledger = PartitionLedger()
    ledger.saw_chunk("A:1", 10)
    ledger.saw_chunk("B:2", 11)
    ledger.passed(audio_offset=12)
    ledger.saw_chunk("A:1", 13)
    assert ledger.audio_commit() == 10
    ledger.closed("A:1")
    assert ledger.audio_commit() == 11
    ledger.closed("B:2")
    assert ledger.audio_commit() == 14


def test_the_call_records_first_audio_offset_pulls_the_commit_back() -> None:
    ledger = PartitionLedger()
    ledger.saw_chunk("A:1", 50)  # this worker started reading mid-call
    ledger.saw_snapshot("A:1", 7, first_audio_offset=42)
    assert ledger.audio_commit() == 42
    assert ledger.calls_commit() == 7
    ledger.closed("A:1")
    assert (ledger.audio_commit(), ledger.calls_commit()) == (51, 8)
