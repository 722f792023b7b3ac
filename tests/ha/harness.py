"""A recording site for the HA scenarios: two recorders, the call-state worker(s), the mixer(s),
Kafka and the S3 server, all real processes; the CUCM emulator in front; and the verdict of each
scenario as numbers (detection time; recordings complete / partial / missing)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.partitioner import murmur2

from callrec.avro.events import CallRecord, CallStatus, RecordingArchived
from callrec.emulator.availability import PingTiming
from callrec.emulator.model import CallReport, Destination
from callrec.infra.kafka import KafkaBroker
from callrec.infra.procs import ManagedProcess, free_port
from callrec.infra.s3 import S3Server
from tests.conftest import TEST_PARTITIONS
from tests.producers.harness import RecorderProcess
from tests.sinks.harness import archived, mixer_env
from tests.streams.harness import Reader, StreamsWorker

PINGS = PingTiming(in_service_interval_s=1, out_of_service_interval_s=1, retries=2,
                   retry_interval_s=0.25)
"""CUCM's OPTIONS rules, shortened: a dead recorder is out of service within ~1.75 s."""
PRODUCTION_DETECTION = {"CALLREC_STREAMS_RECORDER_LOST_AFTER_S": "5",
                        "CALLREC_STREAMS_MEDIA_TIMEOUT_S": "8"}
"""The defaults the 10 s bound is about (the other windows stay short to keep the suite fast)."""
DETECTION_LIMIT_S = 10.0
"""The issue's bound for marking the calls of a dead recorder abnormal."""


@dataclass
class Site:
    kafka: KafkaBroker
    s3: S3Server
    run_dir: Path
    cluster: str = field(default_factory=lambda: f"HA{uuid.uuid4().hex[:8]}")
    recorders: dict[str, RecorderProcess] = field(default_factory=dict)
    streams: list[StreamsWorker] = field(default_factory=list)
    mixers: list[ManagedProcess] = field(default_factory=list)
    mixer_env: dict[str, str] = field(default_factory=dict)
    streams_env: dict[str, str] = field(default_factory=dict)
    """Call-state settings over PRODUCTION_DETECTION (e.g. the production segment window)."""
    recorder_env: dict[str, str] = field(default_factory=dict)
    """Settings of both recorders over the site's (e.g. a wider RTP port range)."""

    def start(self, sip_hosts: dict[str, str] | None = None) -> None:
        app_id = f"ha-{uuid.uuid4().hex[:8]}"
        self.streams = [StreamsWorker(self.kafka.bootstrap, app_id, self.run_dir, f"streams-{i}",
                                      {**PRODUCTION_DETECTION, **self.streams_env})
                        for i in (1, 2)]
        self.streams[0].start()
        self.mixer_env = mixer_env(self.kafka, self.s3, self.run_dir, self.cluster)
        self.mixers = [ManagedProcess(f"mixer-{i}", self.run_dir) for i in (1, 2)]
        self.start_mixer(0)
        rtp = 30000 + free_port() % 250 * 100
        for i, name in enumerate("AB"):
            host = (sip_hosts or {}).get(name, "127.0.0.1")
            self.recorders[name] = RecorderProcess(
                data_dir=self.run_dir / f"recorder-{name}", bootstrap=self.kafka.bootstrap,
                recorder_id=f"rec-{name}-{uuid.uuid4().hex[:6]}", rtp_base=rtp + i * 100,
                extra_env={"CALLREC_RECORDER_SIP_HOST": host, "CALLREC_RECORDER_ALLOW":
                           "127.0.0.1,10.0.0.0/8", **self.recorder_env},
            )
            self.start_recorder(name)
        self.streams[0].wait_assigned()

    def start_mixer(self, index: int) -> None:
        home = self.run_dir / f"mixer-{index + 1}"
        home.mkdir(parents=True, exist_ok=True)
        env = {**self.mixer_env, "CALLREC_MIXER_SPOOL_DIR": str(home / "spool"),
               "CALLREC_MIXER_HEALTH_FILE": str(home / "health.json")}
        self.mixers[index].start([sys.executable, "-m", "callrec.sinks"], env=env)

    def start_recorder(self, name: str) -> None:
        recorder = self.recorders[name]
        recorder.start()
        recorder.wait_healthy()

    def ensure_up(self) -> None:
        for name, recorder in self.recorders.items():
            if recorder.proc is None or recorder.proc.poll() is not None:
                self.start_recorder(name)

    def kill_recorder(self, name: str) -> None:
        proc = self.recorders[name].proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)

    def mixer_partitions(self, index: int) -> list[int]:
        """The rec.calls.v1 partitions a mixer reports it holds (its health file)."""
        try:
            health = json.loads((self.run_dir / f"mixer-{index + 1}" / "health.json").read_text())
        except (OSError, ValueError):
            return []
        partitions: list[int] = health.get("partitions", [])
        return partitions

    def wait_mixers_share_partitions(self, within_s: float = 60.0) -> None:
        """Until each running mixer holds some partitions and together they hold them all once."""
        deadline = time.monotonic() + within_s
        while True:
            held = [self.mixer_partitions(i) for i, m in enumerate(self.mixers) if m.pid()]
            flat = sorted(p for partitions in held for p in partitions)
            if all(held) and flat == list(range(TEST_PARTITIONS)):
                return
            assert time.monotonic() < deadline, f"mixers hold {held}"
            time.sleep(0.2)

    def destinations(self) -> list[Destination]:
        """The route group CUCM dials: A first (Top Down's active recorder), then B."""
        return [Destination(name=name, host=r.extra_env["CALLREC_RECORDER_SIP_HOST"],
                            port=r.sip_port) for name, r in self.recorders.items()]

    def stop(self) -> None:
        for recorder in self.recorders.values():
            recorder.stop()
        for mixer in self.mixers:
            mixer.stop()
        for worker in self.streams:
            worker.stop()


@contextmanager
def running_site(kafka: KafkaBroker, s3: S3Server, run_dir: Path,
                 streams_env: dict[str, str] | None = None,
                 recorder_env: dict[str, str] | None = None) -> Iterator[Site]:
    """A started site, stopped (every process by PID) when the block ends."""
    site = Site(kafka, s3, run_dir, streams_env=streams_env or {},
                recorder_env=recorder_env or {})
    try:
        site.start()
        yield site
    finally:
        site.stop()


@dataclass
class Outcome:
    """What became of a scenario's calls."""

    records: dict[str, CallRecord]
    recordings: dict[str, RecordingArchived]
    not_recorded: list[str]

    def count(self) -> dict[str, int]:
        complete = sum(1 for r in self.recordings.values() if not r.partial)
        return {"complete": complete, "partial": len(self.recordings) - complete,
                "missing": len(self.records) - len(self.recordings),
                "not offered to a recorder": len(self.not_recorded)}


async def outcome(site: Site, reader: Reader, calls: list[CallReport],
                  within_s: float = 60.0) -> Outcome:
    """Every recorded call's final record and its recording; calls no recorder took are listed."""
    recorded = [c.call_key for c in calls if any(leg.recorder for leg in c.legs)]
    not_recorded = [c.call_key for c in calls if c.call_key not in recorded]
    records = await reader.wait_for(recorded, lambda r: r.status != CallStatus.ACTIVE,
                                    within_s) if recorded else {}
    found = await archived(site.kafka.bootstrap, set(recorded), within_s) if recorded else []
    return Outcome(records, {r.call_key: r for r in found}, not_recorded)


async def calls_placed_since(reader: Reader, before: set[str], cluster: str, count: int,
                             within_s: float = 15.0) -> list[str]:
    """Keys of ``count`` calls of the cluster that reached rec.calls.v1 after ``before``: the
    calls under way, known before the emulator reports them (it reports when they end)."""
    deadline = time.monotonic() + within_s
    while len(keys := [k for k in set(reader.records) - before
                       if k.startswith(cluster + ":")]) < count:
        assert time.monotonic() < deadline, f"only {len(keys)} of {count} calls in the event log"
        await reader.poll()
    return keys


def partition_of(call_key: str) -> int:
    """The partition of a call's events: Kafka's default partitioner (murmur2 of the key)."""
    return (murmur2(call_key.encode()) & 0x7FFFFFFF) % TEST_PARTITIONS


def report(scenario: str, detection_s: float | None, result: Outcome, path: Path) -> None:
    """One line per scenario, printed and appended to the run's report file."""
    line = {"scenario": scenario, "detection_s": None if detection_s is None
            else round(detection_s, 2), **result.count()}
    print(json.dumps(line))
    with path.open("a") as out:
        out.write(json.dumps(line) + "\n")
