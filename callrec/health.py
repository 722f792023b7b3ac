"""One health record for every process, written by one helper and read by `./run status`.

Each long-running process (recorder, call state, mixer, ...) rewrites a small JSON file with the
same shape: ``component``, ``pid``, ``at`` (Unix seconds of the last sign of life), ``state`` and
whatever the component adds. A reader never talks to the process: it judges the file, so a wedged
process (its ``at`` stops moving) is as visible as a dead one. ``at`` is the process's own sign
of life (the call-state worker passes its fold loop's last turn, not the time of writing: a timer
that keeps writing while the loop is stuck must not look healthy).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALIVE = frozenset({"running", "degraded"})
"""States of a process doing its work; ``degraded`` says it is retrying something (a store
down) and is reported, not counted as down."""


@dataclass(frozen=True)
class Health:
    component: str
    pid: int
    at: float
    state: str
    detail: dict[str, Any]


def write_health(path: Path, component: str, state: str, at: float | None = None,
                 **detail: Any) -> None:
    """Replace the file atomically, so a reader never sees half of it."""
    body = {"component": component, "pid": os.getpid(),
            "at": time.time() if at is None else at, "state": state, **detail}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, sort_keys=True, default=str))
    tmp.replace(path)


def read_health(path: Path) -> Health | None:
    try:
        raw = json.loads(path.read_text())
        return Health(str(raw.pop("component")), int(raw.pop("pid")), float(raw.pop("at")),
                      str(raw.pop("state")), raw)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def judge(path: Path, max_age_s: float, now: float | None = None) -> tuple[bool, str]:
    """(alive, why): the file exists, says running or degraded, and is fresher than
    ``max_age_s``."""
    health = read_health(path)
    if health is None:
        return False, f"no readable health record at {path}"
    age = (time.time() if now is None else now) - health.at
    if health.state not in ALIVE:
        return False, f"{health.component} is {health.state}"
    if age > max_age_s:
        return False, f"{health.component} silent for {age:.1f} s"
    return True, f"{health.component} {health.state}"
