"""The source system's failover table, each row a test, and the faults beyond it.

Two recorders (A, B), the call-state worker, the mixer, Kafka and the S3 server run as real
processes; the CUCM emulator pings them with CUCM's OPTIONS rules (shortened) and routes the
recording INVITEs. Each test prints one JSON line: detection time and recordings complete /
partial / missing (also appended to <tmp>/ha-report.jsonl).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from callrec.avro.events import AbnormalReason, CallStatus
from callrec.emulator.cucm import Cucm
from callrec.emulator.model import AttemptResult, CallReport
from callrec.emulator.routing import Distribution
from callrec.infra.kafka import KafkaBroker
from callrec.infra.s3 import S3Server
from tests.ha.harness import (
    DETECTION_LIMIT_S,
    PINGS,
    Outcome,
    Site,
    calls_placed_since,
    outcome,
    partition_of,
    report,
    running_site,
)
from tests.streams.harness import Reader

pytestmark = pytest.mark.slow
CALL_S = 4.0
PACKET_S = 0.020
"""The emulator's legs stream 20 ms RTP packets from answer to BYE."""


@pytest.fixture(scope="module")
def site(kafka: KafkaBroker, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Site]:
    with running_site(kafka, s3, tmp_path_factory.mktemp("ha")) as site:
        yield site


@pytest.fixture
async def reader(kafka: KafkaBroker) -> AsyncIterator[Reader]:
    async with Reader(kafka.bootstrap) as reader:
        yield reader


def cucm(site: Site, distribution: Distribution = Distribution.TOP_DOWN) -> Cucm:
    return Cucm(site.destinations(), distribution, PINGS, cluster=site.cluster)


def assert_complete(result: Outcome, seconds: float = CALL_S) -> None:
    """Every recorded call COMPLETED, archived whole: audio for the whole call on each leg,
    every packet once (the fold counts distinct chunks), none lost."""
    for key, record in result.records.items():
        assert record.status == CallStatus.COMPLETED, (key, record.abnormal_detail)
        recording = result.recordings[key]
        assert not recording.partial and recording.channels == 2, recording
        assert abs(recording.duration_ms / 1000 - seconds) < 1.5, recording.duration_ms
        for leg in record.legs:
            assert leg.packets_lost == 0, record.legs
            assert (seconds - 1.5) / PACKET_S < leg.packets_received < (seconds + 0.5) / PACKET_S, (
                record.legs)  # the stream runs from the ACK to the BYE, give or take the jitter


def on(calls: list[CallReport]) -> set[str | None]:
    return {leg.recorder for call in calls for leg in call.legs}


def report_path(site: Site) -> object:
    return site.run_dir / "ha-report.jsonl"


async def calls_after(site: Site, reader: Reader, emulator: Cucm, label: str, change: str,
                      expect: str) -> None:
    """Recorder A goes ``change`` ("down" or "up"); the emulator must see it in 10 s, and the
    next calls must go to ``expect`` and be recorded whole."""
    changed_at = time.time()
    if change == "down":
        await asyncio.to_thread(site.recorders["A"].stop)
        seen = await emulator.wait_out_of_service("A", 10)
    else:
        await asyncio.to_thread(site.start_recorder, "A")
        seen = await emulator.wait_in_service("A", 10)
    detected_s = seen.at.timestamp() - changed_at
    calls = await emulator.place_calls(2, CALL_S)
    assert on(calls) == {expect}
    result = await outcome(site, reader, calls)
    assert_complete(result)
    report(label, detected_s, result, report_path(site))  # type: ignore[arg-type]


async def test_1_active_recorder_down_new_calls_go_to_b_and_are_recorded(
    site: Site, reader: Reader
) -> None:
    site.ensure_up()
    async with cucm(site) as emulator:
        assert on(await emulator.place_calls(1, 1.0)) == {"A"}
        await calls_after(site, reader, emulator, "1 A down -> B", "down", expect="B")


async def test_2_active_recorder_restored_new_calls_go_to_a_again(
    site: Site, reader: Reader
) -> None:
    if site.recorders["A"].proc is not None and site.recorders["A"].proc.poll() is None:
        await asyncio.to_thread(site.recorders["A"].stop)
    async with cucm(site) as emulator:
        assert emulator.states["A"].value != "in-service"
        await calls_after(site, reader, emulator, "2 A restored -> A", "up", expect="A")


async def test_3_both_down_no_recordings_gap_in_metrics_then_resumes(
    site: Site, reader: Reader
) -> None:
    site.ensure_up()
    ids = {name: r.recorder_id for name, r in site.recorders.items()}
    async with cucm(site) as emulator:
        down_at = time.time()
        await asyncio.gather(*(asyncio.to_thread(r.stop) for r in site.recorders.values()))
        changes = [await emulator.wait_out_of_service(name, 10) for name in ids]
        detected_s = max(c.at.timestamp() for c in changes) - down_at
        lost = await emulator.place_calls(2, 1.0)
        assert on(lost) == {None}
        assert all(a.result != AttemptResult.COMPLETED
                   for call in lost for leg in call.legs for a in leg.attempts)

        # The gap is in the metrics: a window where neither recorder is up.
        deadline = time.monotonic() + 20
        while not all(any(m.metric == "recorder_up" and m.labels.get("recorder") == rid
                          and m.value == 0 and m.window_end.timestamp() > down_at
                          for m in reader.metrics) for rid in ids.values()):
            assert time.monotonic() < deadline, "no recorder_up = 0 window for A and B"
            await reader.poll()
        # No half-written state: no call of this site is left ACTIVE, and none of the refused
        # calls reached the event log.
        await reader.poll(2.0)
        active = [k for k, v in reader.records.items() if k.startswith(site.cluster + ":")
                  and max(v, key=lambda r: r.version).status == CallStatus.ACTIVE]
        assert active == []
        assert not any(call.call_key in reader.records for call in lost)

        await asyncio.to_thread(site.start_recorder, "B")
        await emulator.wait_in_service("B", 10)
        resumed = await emulator.place_calls(1, CALL_S)
    assert on(resumed) == {"B"}
    result = await outcome(site, reader, lost + resumed)
    assert_complete(result)
    assert len(result.not_recorded) == 2
    report("3 A and B down -> none; B back -> B", detected_s, result,
           report_path(site))  # type: ignore[arg-type]


async def test_5_recorder_killed_mid_call_abnormal_within_10_s_with_partial_recording(
    site: Site, reader: Reader
) -> None:
    site.ensure_up()
    await reader.poll(1.0)
    before = set(reader.records)
    async with cucm(site) as emulator:
        placing = asyncio.create_task(emulator.place_calls(3, 12.0))
        live = await calls_placed_since(reader, before, site.cluster, 3)
        await asyncio.sleep(3.0)  # not a wait: the partial recordings are to hold ~3 s of audio
        killed_at = time.time()
        site.kill_recorder("A")
        records = await reader.wait_for(live, lambda r: r.status != CallStatus.ACTIVE,
                                        DETECTION_LIMIT_S + 5)
        detected_s = time.time() - killed_at  # an upper bound: the reader polls every 0.5 s
        calls = await placing
    assert on(calls) == {"A"} and {c.call_key for c in calls} == set(live)
    for record in records.values():
        assert record.abnormal_reason == AbnormalReason.RECORDER_LOST, record
    assert detected_s <= DETECTION_LIMIT_S, detected_s
    result = await outcome(site, reader, calls)
    for call in calls:
        recording = result.recordings[call.call_key]
        held_s = killed_at - call.started_at.timestamp()
        assert recording.partial, recording
        assert abs(recording.duration_ms / 1000 - held_s) < 1.5, (recording.duration_ms, held_s)
    report("5 A killed mid-call", detected_s, result, report_path(site))  # type: ignore[arg-type]


async def test_circular_routing_splits_legs_and_still_makes_one_recording(
    site: Site, reader: Reader
) -> None:
    site.ensure_up()
    async with cucm(site, Distribution.CIRCULAR) as emulator:
        calls = await emulator.place_calls(4, CALL_S)
    split = [c for c in calls if len({leg.recorder for leg in c.legs}) == 2]
    assert split, [c.legs for c in calls]
    result = await outcome(site, reader, calls)
    assert_complete(result)
    report("circular: legs split across A and B", None, result,
           report_path(site))  # type: ignore[arg-type]


async def test_kill_9_a_call_state_worker_under_load_loses_nothing(
    site: Site, reader: Reader
) -> None:
    site.ensure_up()
    site.streams[1].start()
    await asyncio.to_thread(site.streams[1].wait_assigned)
    await reader.poll(1.0)
    before = set(reader.records)
    async with cucm(site, Distribution.CIRCULAR) as emulator:
        placing = asyncio.create_task(emulator.place_calls(6, 8.0))
        live = await calls_placed_since(reader, before, site.cluster, 6)  # in the workers' state
        held = site.streams[0].wait_assigned()
        site.streams[0].kill()
        calls = await placing
    assert {partition_of(key) for key in live} & set(held), (live, held)  # it held some calls
    result = await outcome(site, reader, calls, within_s=90)
    assert_complete(result, 8.0)
    report("kill -9 a call-state worker under load", None, result,
           report_path(site))  # type: ignore[arg-type]


async def test_kill_9_a_mixer_as_calls_end_loses_nothing(site: Site, reader: Reader) -> None:
    site.ensure_up()
    site.start_mixer(1)
    await asyncio.to_thread(site.wait_mixers_share_partitions)
    async with cucm(site, Distribution.CIRCULAR) as emulator:
        calls = await emulator.place_calls(4, CALL_S)
    ours = {partition_of(c.call_key) for c in calls}
    # The calls' keys fall anywhere, so kill the mixer that holds most of them (the two hold
    # every partition between them, so that one holds at least one).
    victim = max(range(len(site.mixers)), key=lambda i: len(ours & set(site.mixer_partitions(i))))
    held = site.mixer_partitions(victim)
    site.mixers[victim].kill()  # the calls' verdicts and mixing are due in the next seconds
    assert ours & set(held), (ours, held)  # it held some calls
    result = await outcome(site, reader, calls, within_s=90)
    assert_complete(result)
    report("kill -9 a mixer as calls end", None, result,
           report_path(site))  # type: ignore[arg-type]


async def test_kafka_broker_restart_under_load_loses_and_duplicates_nothing(
    site: Site, reader: Reader, kafka: KafkaBroker
) -> None:
    site.ensure_up()
    await reader.poll(1.0)
    before = set(reader.records)
    async with cucm(site, Distribution.CIRCULAR) as emulator:
        placing = asyncio.create_task(emulator.place_calls(4, 10.0))
        await calls_placed_since(reader, before, site.cluster, 4)  # under way
        await asyncio.to_thread(kafka.stop)
        await asyncio.sleep(3.0)  # the outage
        await asyncio.to_thread(kafka.start)
        calls = await placing
    result = await outcome(site, reader, calls, within_s=120)
    assert_complete(result, 10.0)
    report("Kafka broker restart under load", None, result,
           report_path(site))  # type: ignore[arg-type]
