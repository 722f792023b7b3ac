"""Row 4 of the failover table: the link between recorder A and CUCM goes down -> B takes over.

The emulator runs inside a network namespace the test creates, reaching each recorder over its own
veth pair; cutting A's veth leaves A running (and talking to Kafka on loopback) but unreachable
from CUCM, as a failed switch port or NIC would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import pytest

from callrec.avro.events import CallStatus
from callrec.emulator.model import CallReport
from callrec.infra.kafka import KafkaBroker
from callrec.infra.s3 import S3Server
from tests.ha.harness import PINGS, Site, calls_placed_since, outcome, report
from tests.ha.netns import CucmNamespace
from tests.streams.harness import Reader

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def linked(kafka: KafkaBroker, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Site, CucmNamespace]]:
    namespace = CucmNamespace()
    site = Site(kafka, s3, tmp_path_factory.mktemp("ha-link"))
    try:
        namespace.create(["A", "B"])
        site.start({name: link.host_ip for name, link in namespace.links.items()})
        yield site, namespace
    finally:
        site.stop()
        namespace.remove()


class ServedCucm:
    """`callrec cucm serve` inside the namespace, driven over its stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self.reading = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.events.append(json.loads(line))

    def send(self, command: dict[str, object]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")

    async def wait(self, want: str, within_s: float, **match: object) -> dict[str, Any]:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            for event in self.events:
                if event["event"] == want and all(event.get(k) == v for k, v in match.items()):
                    return event
            assert self.proc.returncode is None, f"emulator exited: {self.events}"
            await asyncio.sleep(0.1)
        raise AssertionError(f"no {want} {match} within {within_s} s: {self.events}")


@contextlib.asynccontextmanager
async def served(site: Site, namespace: CucmNamespace) -> AsyncIterator[ServedCucm]:
    recorders = [f"--recorder={name}={link.host_ip}:{site.recorders[name].sip_port}"
                 f"@{link.cucm_ip}" for name, link in namespace.links.items()]
    argv = namespace.exec_argv(
        sys.executable, "-m", "callrec.emulator", "serve", *recorders, "--routing", "top-down",
        "--ping-interval", str(PINGS.in_service_interval_s),
        "--oos-interval", str(PINGS.out_of_service_interval_s),
        "--retries", str(PINGS.retries), "--retry-interval", str(PINGS.retry_interval_s),
        "--cluster-id", site.cluster,
    )
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE)
    cucm = ServedCucm(proc)
    try:
        await cucm.wait("ready", 30)
        yield cucm
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        cucm.reading.cancel()


async def test_4_link_between_a_and_cucm_down_b_takes_over(
    linked: tuple[Site, CucmNamespace], kafka: KafkaBroker
) -> None:
    site, namespace = linked
    async with Reader(kafka.bootstrap) as reader, served(site, namespace) as cucm:
        await reader.poll(1.0)
        before = set(reader.records)
        cucm.send({"place": 2, "seconds": 12})
        on_a = await calls_placed_since(reader, before, site.cluster, 2)
        await asyncio.sleep(2.0)
        cut_at = time.time()
        namespace.cut("A")
        try:
            change = await cucm.wait("service", 10, destination="A", state="out-of-service")
            detected_s = datetime.fromisoformat(change["at"]).timestamp() - cut_at
            records = await reader.wait_for(on_a, lambda r: r.status != CallStatus.ACTIVE, 20)
            cucm.send({"place": 2, "seconds": 4})
            deadline = time.monotonic() + 60
            while len(batches := [e for e in cucm.events if e["event"] == "calls"]) < 2:
                assert time.monotonic() < deadline, cucm.events
                await asyncio.sleep(0.2)
        finally:
            namespace.restore("A")
        calls = [CallReport.model_validate(c) for batch in batches for c in batch["calls"]]
        cut_calls = [c for c in calls if c.call_key in on_a]
        after = [c for c in calls if c.call_key not in on_a]
        assert {leg.recorder for c in cut_calls for leg in c.legs} == {"A"}
        assert {leg.recorder for c in after for leg in c.legs} == {"B"}

        result = await outcome(site, reader, calls)
        for key in on_a:
            assert records[key].status == CallStatus.ABNORMAL, records[key]
            assert result.recordings[key].partial
        for call in after:
            assert result.records[call.call_key].status == CallStatus.COMPLETED
            assert not result.recordings[call.call_key].partial
    report("4 link A-CUCM cut -> B", detected_s, result,
           site.run_dir / "ha-report.jsonl")
