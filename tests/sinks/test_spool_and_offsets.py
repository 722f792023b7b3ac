"""The spool's budgets, the offset ledger's rule (never commit past an open call's audio) and
the health check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from callrec.sinks.chunk_spool import ChunkSpool
from callrec.sinks.cli import app
from callrec.sinks.errors import ChunkSpoolFull
from callrec.sinks.health import HealthReport, check_health
from callrec.sinks.offsets import PartitionLedger
from tests.disks import SmallDisk, fill_disk


def test_spool_spills_to_disk_and_gives_everything_back_in_order(tmp_path: Path) -> None:
    spool = ChunkSpool(tmp_path, memory_budget=250, disk_budget=10_000)
    for n in range(6):
        spool.add("A:1", n, bytes([n]) * 100, None)
    spool.add("B:2", 99, b"b" * 10, None)
    assert spool.memory_bytes <= 250 and spool.disk_bytes > 0
    assert list(spool.stream("A:1")) == [(n, bytes([n]) * 100, None) for n in range(6)]
    spool.discard("A:1")
    assert list(spool.stream("A:1")) == [] and spool.disk_bytes == 0
    assert not list(tmp_path.glob("*.spool"))
    assert list(spool.stream("B:2")) == [(99, b"b" * 10, None)]


def test_a_full_spool_refuses_and_stays_as_it_was(tmp_path: Path) -> None:
    spool = ChunkSpool(tmp_path, memory_budget=100, disk_budget=150)
    spool.add("A:1", 0, b"x" * 90, None)
    with pytest.raises(ChunkSpoolFull) as caught:
        spool.add("A:1", 1, b"y" * 90, None)
    assert caught.value.retriable
    assert list(spool.stream("A:1")) == [(0, b"x" * 90, None)]


def test_a_spill_the_disk_refuses_half_way_leaves_no_torn_record(small_disk: SmallDisk) -> None:
    """The disk fills in the middle of a spill: the spool refuses (the value is offered again
    later), and once there is room every record comes back whole, in order."""
    disk = small_disk(256 * 1024)
    spool = ChunkSpool(disk / "spool", memory_budget=40_000, disk_budget=10_000_000)
    values = [bytes([n]) * 30_000 for n in range(8)]
    spool.add("A:1", 0, values[0], None)
    spool.add("A:1", 1, values[1], None)  # spills 60 KB
    filler = fill_disk(disk, leave_bytes=40_000)  # room for one record and a half
    kept = 2
    for n in range(2, 5):
        try:
            spool.add("A:1", n, values[n], None)
            kept += 1
        except ChunkSpoolFull:
            break
    else:
        raise AssertionError("the disk never filled")
    assert list(spool.stream("A:1")) == [(n, values[n], None) for n in range(kept)]
    filler.unlink()  # room again: the torn tail is cut before the next spill
    for n in range(kept, 8):
        spool.add("A:1", n, values[n], None)
    assert list(spool.stream("A:1")) == [(n, values[n], None) for n in range(8)]


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


def test_health_check_wants_a_fresh_running_status(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "health.json"
    monkeypatch.setenv("CALLREC_MIXER_HEALTH_FILE", str(path))
    runner = CliRunner()
    assert runner.invoke(app, ["health"]).exit_code == 1  # no file yet
    HealthReport(path).write({"state": "running", "open_calls": 0})
    assert runner.invoke(app, ["health"]).exit_code == 0
    HealthReport(path).write({"state": "running", "store_failing_since": "2026-11-24T20:00:00"})
    degraded = runner.invoke(app, ["health"])
    assert degraded.exit_code == 0 and "degraded" in degraded.output
    HealthReport(path).write({"state": "running", "paused": True, "store_failing_since": None})
    full = runner.invoke(app, ["health"])
    assert full.exit_code == 0 and "spool full" in full.output
    assert json.loads(path.read_text())["state"] == "degraded"
    assert check_health(path, max_age_s=-1)[0] is False  # stale
    HealthReport(path).write({"state": "stopped"})
    assert runner.invoke(app, ["health"]).exit_code == 1
