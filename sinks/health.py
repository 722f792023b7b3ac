"""The worker's health signal: a small JSON status file rewritten every commit interval.

The stack checks it without talking to the worker: the file exists, its ``state`` is running and
its ``time`` is fresh. ``callrec mixer health`` does exactly that check.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class HealthReport:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, status: dict[str, Any]) -> None:
        """Replace the file atomically so a reader never sees half of it."""
        body = {"pid": os.getpid(), "time": time.time(), **status}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, sort_keys=True))
        tmp.replace(self.path)


def check_health(path: Path, max_age_s: float) -> tuple[bool, str]:
    """Healthy when the file says running and was written within ``max_age_s``."""
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return False, f"no health file at {path}: {e}"
    age = time.time() - float(status.get("time", 0))
    if status.get("state") != "running":
        return False, f"state is {status.get('state')!r}"
    if age > max_age_s:
        return False, f"health file is {age:.1f} s old"
    if status.get("store_failing_since"):  # alive and retrying: degraded, not dead
        return True, f"degraded: object store failing since {status['store_failing_since']}"
    return True, json.dumps(status, sort_keys=True)
