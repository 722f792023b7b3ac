"""Small disks of a test's own, to fill: a tmpfs mounted by the ``small_disk`` fixture
(tests/conftest.py), and a filler file that takes the room."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

SmallDisk = Callable[[int], Path]
"""The ``small_disk`` fixture: mounts a tmpfs of the given size, returns its directory."""


def room(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def fill_disk(directory: Path, leave_bytes: int = 0) -> Path:
    """Write a filler file until the disk refuses (or only ``leave_bytes`` are left); returns
    it (delete it to give the room back)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while (want := min(64 * 1024, room(directory) - leave_bytes)) > 0:
            try:
                if os.write(fd, b"\0" * want) == 0:
                    break
            except OSError:
                break
    finally:
        os.close(fd)
    return filler
