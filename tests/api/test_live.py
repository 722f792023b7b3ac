"""GET /live/calls: a snapshot of the active calls, then each change as the replica applies it."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import httpx

from callrec.api.tokens import Role
from callrec.avro.events import CallStatus
from tests.api.conftest import Seeded
from tests.api.harness import Replica, Site, call_record
from tests.conftest import run_sync
from tests.sinks.harness import publish


def test_snapshot_then_changes(replica: Replica, site: Site, seeded: Seeded,
                               tokens: dict[Role, str]) -> None:
    key = f"{seeded.cluster}live:{time.time_ns()}"
    events: list[tuple[str, object]] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{replica.url}/api/v1/live/calls",
                          headers={"Authorization": f"Bearer {tokens[Role.viewer]}"},
                          timeout=30) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            name = ""
            for line in r.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
                    ready.set()
                    if name == "call" and events[-1][1]["status"] == "COMPLETED":  # type: ignore[index]
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert ready.wait(10), "no snapshot"
    started = datetime.now(UTC)
    active = call_record(key, near="7001", far="7002", started=started,
                         status=CallStatus.ACTIVE, version=1)
    done = call_record(key, near="7001", far="7002", started=started,
                       status=CallStatus.COMPLETED, version=2)
    run_sync(publish(site.kafka.bootstrap, [active]))
    run_sync(publish(site.kafka.bootstrap, [done]))
    listener.join(30)
    assert not listener.is_alive(), events
    name, snapshot = events[0]
    assert name == "snapshot"
    assert seeded.key(1003) in [c["call_key"] for c in snapshot]  # type: ignore[attr-defined]
    mine = [c["status"] for n, c in events[1:] if n == "call" and c["call_key"] == key]  # type: ignore[index]
    assert mine[-1] == "COMPLETED" and set(mine) <= {"ACTIVE", "COMPLETED"}
