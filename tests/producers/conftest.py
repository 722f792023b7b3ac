"""Fixtures the recorder's tests share: the event tap, and a small disk of the test's own to
fill."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from callrec.infra.kafka import KafkaBroker
from tests.producers.harness import EventTap, SmallDisk


@pytest.fixture
async def tap(kafka: KafkaBroker) -> AsyncIterator[EventTap]:
    """The contract topics from their current end, for one test."""
    async with EventTap(kafka.bootstrap) as tap:
        yield tap


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """``small_disk(size_bytes)``: a tmpfs of that size mounted under tmp_path (we run as root;
    skipped where mounting is not allowed), unmounted at teardown."""
    mounted: list[Path] = []

    def mount(size_bytes: int) -> Path:
        path = tmp_path / f"disk{len(mounted)}"
        path.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)],
            capture_output=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode(errors='replace')}")
        mounted.append(path)
        return path

    try:
        yield mount
    finally:
        for path in mounted:
            subprocess.run(["umount", "--lazy", str(path)], check=True)
