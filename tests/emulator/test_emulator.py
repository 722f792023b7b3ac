"""The emulator against two real recorder processes and the real Kafka broker, over loopback.

Routing is checked both in the emulator's report and in what each recorder published: every leg's
LegStarted comes from the recorder the report says answered it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest

from callrec.avro.events import LegStarted
from callrec.emulator.cucm import Cucm
from callrec.emulator.model import AttemptResult, CallReport, Destination
from callrec.emulator.routing import Distribution
from callrec.emulator.service import PingTiming, State
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
    tap = EventTap(kafka.bootstrap)
    await tap.start()
    yield tap
    await tap.stop()


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


async def test_top_down_puts_every_leg_on_the_first_recorder(
    recorders: dict[str, RecorderProcess], tap: EventTap
) -> None:
    async with Cucm(destinations(recorders), Distribution.TOP_DOWN, FAST) as cucm:
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
