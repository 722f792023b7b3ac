"""The emulator against two real recorder processes and the real Kafka broker, over loopback.

Routing is checked both in the emulator's report and in what each recorder published: every leg's
LegStarted comes from the recorder the report says answered it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest

from callrec.avro.events import AudioChunk, Leg, LegEnded, LegEndReason, LegStarted
from callrec.emulator.audio import PACKET_BYTES, loop_payload, looped
from callrec.emulator.availability import PingTiming, State
from callrec.emulator.cucm import Cucm
from callrec.emulator.model import AttemptResult, CallReport, Destination
from callrec.emulator.routing import Distribution
from callrec.infra.kafka import KafkaBroker
from callrec.infra.procs import free_port
from tests.producers.harness import EventTap, RecorderProcess

FAST = PingTiming(
    in_service_interval_s=1, out_of_service_interval_s=1, retries=2, retry_interval_s=0.25
)
CALL_S = 2.0


@pytest.fixture(scope="module")
def recorders(
    kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, RecorderProcess]]:
    base = tmp_path_factory.mktemp("emulator")
    rtp = 30000 + free_port() % 300 * 100
    procs = {
        name: RecorderProcess(data_dir=base / name, bootstrap=kafka.bootstrap,
                              recorder_id=f"rec-{name}-{os.getpid()}", rtp_base=rtp + i * 100)
        for i, name in enumerate("AB")
    }  # fmt: skip
    try:
        for proc in procs.values():
            proc.start()
        for proc in procs.values():
            proc.wait_healthy()
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


@pytest.fixture
async def tap(kafka: KafkaBroker) -> AsyncIterator[EventTap]:
    async with EventTap(kafka.bootstrap) as tap:
        yield tap


def destinations(recorders: dict[str, RecorderProcess]) -> list[Destination]:
    return [Destination(name=n, host="127.0.0.1", port=r.sip_port) for n, r in recorders.items()]


def leg_recorders(calls: list[CallReport]) -> list[str | None]:
    """Who answered each INVITE, in the order the INVITEs were routed."""
    return [leg.recorder for call in calls for leg in call.legs]


async def assert_recorded_where_reported(
    tap: EventTap, recorders: dict[str, RecorderProcess], calls: list[CallReport]
) -> None:
    keys = {call.call_key for call in calls}

    def started(events: list[object]) -> list[LegStarted]:
        return [e for e in events if isinstance(e, LegStarted) and e.call_key in keys]

    await tap.until(lambda events: len(started(events)) == 2 * len(calls))  # type: ignore[arg-type]
    by_leg = {(e.call_key, e.leg.value): e.recorder_id for e in started(tap.events)}  # type: ignore[arg-type]
    for call in calls:
        for leg in call.legs:
            assert leg.recorder is not None
            recorder_id = recorders[leg.recorder].recorder_id
            assert by_leg[(call.call_key, leg.leg.upper().replace("-", "_"))] == recorder_id


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_top_down_puts_every_leg_on_the_first_recorder(
    recorders: dict[str, RecorderProcess], tap: EventTap, transport: Literal["udp", "tcp"]
) -> None:
    async with Cucm(
        destinations(recorders), Distribution.TOP_DOWN, FAST, transport=transport
    ) as cucm:
        assert cucm.states == {"A": State.IN_SERVICE, "B": State.IN_SERVICE}
        calls = await cucm.place_calls(3, CALL_S)
    assert leg_recorders(calls) == ["A"] * 6
    assert all(a.result is AttemptResult.COMPLETED for c in calls for leg in c.legs
               for a in leg.attempts)  # fmt: skip
    assert len({c.call_key for c in calls}) == 3
    assert all(c.call_key.startswith("CUCM-EMU:") for c in calls)
    await assert_recorded_where_reported(tap, recorders, calls)


async def test_circular_routes_each_invite_on_its_own(
    recorders: dict[str, RecorderProcess], tap: EventTap
) -> None:
    async with Cucm(destinations(recorders), Distribution.CIRCULAR, FAST) as cucm:
        calls = await cucm.place_calls(3, CALL_S)
    assert leg_recorders(calls) == ["A", "B"] * 3  # near-end, far-end, call after call
    assert all(call.recorders == {"A", "B"} for call in calls)  # each call split across both
    await assert_recorded_where_reported(tap, recorders, calls)


async def test_a_call_longer_than_the_pcap_streams_audio_for_its_whole_life(
    recorders: dict[str, RecorderProcess], tap: EventTap
) -> None:
    seconds = 13.0  # the pcap is 7.08 s: played once, the last 6 s would be silent
    async with Cucm(destinations(recorders), Distribution.TOP_DOWN, FAST) as cucm:
        [call] = await cucm.place_calls(1, seconds)
    assert call.recorders == {"A"}, call
    key = call.call_key
    await tap.until(lambda evs: sum(isinstance(e, LegEnded) and e.call_key == key
                                    for e in evs) == 2)  # fmt: skip
    events = tap.of(key)
    for leg in (Leg.NEAR_END, Leg.FAR_END):
        [end] = [e for e in events if isinstance(e, LegEnded) and e.leg is leg]
        assert end.reason is LegEndReason.BYE and end.packets_lost == 0, end
        chunks = sorted((e for e in events if isinstance(e, AudioChunk) and e.leg is leg),
                        key=lambda c: c.chunk_seq)  # fmt: skip
        packets = [p for c in chunks for p in c.packets]
        # One running stream: consecutive sequence numbers, 20 ms of timestamp apart ...
        assert all((b.rtp_seq - a.rtp_seq) % 65536 == 1 and b.rtp_timestamp - a.rtp_timestamp
                   == PACKET_BYTES for a, b in itertools.pairwise(packets)), leg
        # ... from answer to BYE, which is the call's length less the INVITE's round trip ...
        audio_s = (packets[-1].arrival_time_us - packets[0].arrival_time_us) / 1e6
        assert seconds - 1.0 < audio_s < seconds + 0.5, audio_s  # give or take the jitter
        # ... and the pcap's A-law audio looped, byte for byte.
        payload = b"".join(p.payload for p in packets)
        assert len(payload) > len(loop_payload()) and payload == looped(len(payload))


@pytest.mark.slow
async def test_a_dead_recorder_is_taken_out_of_service_and_back(
    recorders: dict[str, RecorderProcess], tap: EventTap
) -> None:
    a = recorders["A"]
    async with Cucm(destinations(recorders), Distribution.TOP_DOWN, FAST) as cucm:
        assert a.proc is not None
        killed_at = datetime.now(UTC)
        os.kill(a.proc.pid, signal.SIGKILL)  # a crash: no 503, OPTIONS simply go unanswered
        a.proc.wait(5)
        down = await cucm.wait_out_of_service("A", FAST.detection_limit_s + 2)
        detection_s = (down.at - killed_at).total_seconds()
        print(f"\nA killed -> out of service in {detection_s:.2f} s "
              f"(limit {FAST.detection_limit_s:.2f} s)")  # fmt: skip
        assert 0 < detection_s <= FAST.detection_limit_s + 0.5
        to_b = await cucm.place_calls(2, CALL_S)
        assert leg_recorders(to_b) == ["B"] * 4

        a.start()
        started = time.monotonic()
        await cucm.wait_in_service("A", 30)
        print(f"A restarted -> in service in {time.monotonic() - started:.2f} s")
        a.wait_for(lambda s: s.get("pid") == a.proc.pid and s.get("health") == "HEALTHY", 10)  # type: ignore[union-attr]
        to_a = await cucm.place_calls(2, CALL_S)
        assert leg_recorders(to_a) == ["A"] * 4
    states = [(c.destination, c.state) for c in cucm.service_history if c.destination == "A"]
    assert states == [("A", State.IN_SERVICE), ("A", State.OUT_OF_SERVICE), ("A", State.IN_SERVICE)]
    await assert_recorded_where_reported(tap, recorders, to_b + to_a)


@pytest.mark.slow
async def test_a_refused_invite_is_routed_to_the_next_member(
    recorders: dict[str, RecorderProcess], kafka: KafkaBroker, tmp_path: Path, tap: EventTap
) -> None:
    full = RecorderProcess(data_dir=tmp_path / "C", bootstrap=kafka.bootstrap,
                           extra_env={"CALLREC_RECORDER_MAX_LEGS": "2"})  # fmt: skip
    full.start()
    try:
        full.wait_healthy()
        group = [Destination(name="C", host="127.0.0.1", port=full.sip_port),
                 destinations(recorders)[1]]  # fmt: skip
        async with Cucm(group, Distribution.TOP_DOWN, FAST) as cucm:
            calls = await cucm.place_calls(2, CALL_S)  # 4 INVITEs to C, which takes 2
    finally:
        full.stop()
    legs = [leg for call in calls for leg in call.legs]
    assert sorted(str(leg.recorder) for leg in legs) == ["B", "B", "C", "C"]
    for leg in legs:
        results = [(a.recorder, a.result, a.status) for a in leg.attempts]
        if leg.recorder == "B":
            assert results == [
                ("C", AttemptResult.REFUSED, 503),
                ("B", AttemptResult.COMPLETED, None),
            ]
        else:
            assert results == [("C", AttemptResult.COMPLETED, None)]
    await assert_recorded_where_reported(tap, {"C": full, **recorders}, calls)


async def read_event(proc: asyncio.subprocess.Process, within_s: float = 20) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), within_s)
    assert line, "the emulator closed its stdout"
    event: dict[str, Any] = json.loads(line)
    return event


@pytest.mark.slow
async def test_serve_is_driven_over_stdin_and_stdout(recorders: dict[str, RecorderProcess]) -> None:
    argv = [sys.executable, "-m", "callrec.emulator", "serve", "--routing", "circular",
            "--ping-interval", "1", "--oos-interval", "1", "--retries", "2",
            "--retry-interval", "0.25", "--local-ip", "127.0.0.1"]  # fmt: skip
    for d in destinations(recorders):
        argv += ["--recorder", f"{d.name}={d.host}:{d.port}"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdin is not None
    try:
        first = [await read_event(proc) for _ in range(3)]
        assert sorted((e["event"], e.get("destination")) for e in first) == [
            ("ready", None), ("service", "A"), ("service", "B")
        ]  # fmt: skip
        assert first[-1]["states"] == {"A": "in-service", "B": "in-service"}
        proc.stdin.write(b'{"place": 2, "seconds": 2}\n{"status": true}\nnot json\n')
        await proc.stdin.drain()
        status, error, placed = [await read_event(proc) for _ in range(3)]
        assert status["event"] == "status" and status["states"]["A"] == "in-service"
        assert error["event"] == "error"
        assert placed["event"] == "calls" and len(placed["calls"]) == 2
        assert [leg["recorder"] for c in placed["calls"] for leg in c["legs"]] == ["A", "B"] * 2
        proc.stdin.write(b'{"quit": true}\n')
        await proc.stdin.drain()
        assert (await read_event(proc))["event"] == "bye"
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_run_prints_and_writes_its_report(
    recorders: dict[str, RecorderProcess], tmp_path: Path
) -> None:
    a = destinations(recorders)[0]
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "callrec.cli", "cucm", "run", "--recorder", f"A={a.host}:{a.port}",
         "--calls", "1", "--seconds", "1", "--report", str(report)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "near-end -> A, far-end -> A" in done.stdout
    [call] = json.loads(report.read_text())["calls"]
    assert call["call_key"].startswith("CUCM-EMU:")
