"""Process logs rotate by size: the rule on its own, and a real process flooding its log."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from callrec.infra.logpipe import RotatingLog
from callrec.infra.procs import ManagedProcess


def kept(path: Path, backups: int) -> list[Path]:
    """The log's files, oldest first."""
    older = [path.with_name(f"{path.name}.{n}") for n in range(backups, 0, -1)]
    return [p for p in [*older, path] if p.exists()]


def test_rotation_keeps_the_newest_output_in_whole_lines_within_the_size(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    log = RotatingLog(path, max_bytes=1000, backups=2)
    lines = [f"line {n:05d} {'.' * (n % 37)}\n".encode() for n in range(400)]
    written = b"".join(lines)
    for n in range(0, len(lines), 7):
        log.write(b"".join(lines[n:n + 7]))
    log.close()
    files = kept(path, 2)
    assert [p.name for p in files] == ["x.log.2", "x.log.1", "x.log"]
    assert not path.with_name("x.log.3").exists()
    contents = [p.read_bytes() for p in files]
    assert all(0 < len(c) <= 1000 for c in contents)
    assert all(c.endswith(b"\n") for c in contents)  # no line is cut in two
    joined = b"".join(contents)
    assert written.endswith(joined)  # the newest output, in order, nothing missing in between
    assert len(joined) > 2000  # the oldest went only as far as the three files needed


def test_a_line_longer_than_a_file_is_split_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    log = RotatingLog(path, max_bytes=100, backups=3)
    log.write(b"a" * 250 + b"\n")
    log.close()
    assert b"".join(p.read_bytes() for p in kept(path, 3)) == b"a" * 250 + b"\n"


def test_no_backups_keeps_only_the_current_file(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    log = RotatingLog(path, max_bytes=10, backups=0)
    log.write(b"first\nsecond\nthird\n")
    log.close()
    assert kept(path, 3) == [path] and path.read_bytes() == b"third\n"


FLOOD = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (print("last words", flush=True), sys.exit(0)))
for n in range(20000):
    print(f"junk {n:06d} " + "x" * 40)
sys.stdout.flush()
print("flooded", flush=True)
time.sleep(600)
"""


def test_a_process_flooding_its_log_is_rotated_and_its_last_words_are_kept(
    tmp_path: Path,
) -> None:
    process = ManagedProcess("flood", tmp_path, log_max_bytes=100_000, log_backups=3)
    process.start([sys.executable, "-c", FLOOD])
    try:
        deadline = time.monotonic() + 30
        while b"flooded" not in (process.log_file.read_bytes() if process.log_file.exists()
                                 else b""):
            assert time.monotonic() < deadline, "the flood never reached the log"
            time.sleep(0.1)
    finally:
        assert process.stop()
    files = kept(process.log_file, 3)
    assert len(files) == 4  # the current file and three old ones: ~1 MB written, 400 KB kept
    assert all(p.stat().st_size <= 100_000 for p in files)
    deadline = time.monotonic() + 10  # the writer outlives the stopped process by a moment
    while b"last words" not in process.log_file.read_bytes():
        assert time.monotonic() < deadline, "the process's last line was not written"
        time.sleep(0.1)
    assert b"junk 019999" in b"".join(p.read_bytes() for p in files)


@pytest.mark.parametrize(("max_bytes", "backups"), [(0, 1), (10, -1)])
def test_nonsense_limits_are_refused(tmp_path: Path, max_bytes: int, backups: int) -> None:
    with pytest.raises(ValueError):
        RotatingLog(tmp_path / "x.log", max_bytes, backups)
