"""The worker's health signal: a small JSON status file rewritten every commit interval.

The stack checks it without talking to the worker (callrec/health.py): the record exists, its
``state`` is running or degraded and its ``at`` is fresh. ``callrec mixer health`` does exactly
that check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from callrec.health import judge, read_health, write_health


class HealthReport:
    """The mixer's health record (callrec/health.py): ``degraded`` while the store fails or the
    spool is full (audio partitions paused: Kafka holds the audio, but archiving lags)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, status: dict[str, Any]) -> None:
        state = status.pop("state", "running")
        if state == "running" and (status.get("store_failing_since") or status.get("paused")):
            state = "degraded"
        write_health(self.path, "mixer", state, **status)


def check_health(path: Path, max_age_s: float) -> tuple[bool, str]:
    """Alive when the record says running (or degraded: retrying the store) and is fresh."""
    ok, why = judge(path, max_age_s)
    health = read_health(path)
    if ok and health is not None and health.detail.get("store_failing_since"):
        why = f"degraded: object store failing since {health.detail['store_failing_since']}"
    elif ok and health is not None and health.detail.get("paused"):
        why = "degraded: spool full, audio partitions paused"
    return ok, why
