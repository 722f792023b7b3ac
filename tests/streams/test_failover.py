"""Two workers in one group; kill -9 one mid-call: the other takes its partitions, recovers
their calls from the table's changelog, and no call is lost, double-counted or left active."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest

from callrec.avro.events import CallRecord, CallStatus, Event, Leg
from callrec.infra.kafka import KafkaBroker
from callrec.streams.replay import replay_and_compare
from callrec.streams.settings import StreamsSettings
from tests.streams.factory import Call, new_call_key
from tests.streams.harness import (
    FAST_RULES,
    Reader,
    StreamsWorker,
    heartbeats,
    publish,
    wait_committed,
)

CALLS = 30
SLOW_MEDIA = {"CALLREC_STREAMS_MEDIA_TIMEOUT_S": "120"}


@pytest.fixture
def workers(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[StreamsWorker, StreamsWorker]]:
    app_id = f"streams-failover-{uuid.uuid4().hex[:8]}"
    run_dir = tmp_path_factory.mktemp("failover")
    pair = (StreamsWorker(kafka.bootstrap, app_id, run_dir, "survivor", SLOW_MEDIA),
            StreamsWorker(kafka.bootstrap, app_id, run_dir, "victim", SLOW_MEDIA))
    try:
        for worker in pair:
            worker.start()
        yield pair
    finally:
        for worker in pair:
            worker.stop()


def wait_split(pair: tuple[StreamsWorker, StreamsWorker], timeout: float = 60.0,
               since: float = 0.0) -> None:
    """Until the two workers share the six partitions, as health records written after
    ``since`` (wall time) say: a worker just resumed from SIGSTOP still has its old record."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        healths = [w.health() or {} for w in pair]
        fresh = all(float(h.get("at", 0)) >= since for h in healths)  # type: ignore[arg-type]
        owned = [set(h.get("assigned_partitions") or []) for h in healths]  # type: ignore[call-overload]
        ready = fresh and all(h.get("recorders_ready") for h in healths)
        split = all(owned) and not owned[0] & owned[1] and owned[0] | owned[1] == set(range(6))
        if ready and split:
            return
        time.sleep(0.5)
    raise AssertionError(f"no split: {[w.health() for w in pair]}\n{pair[1].log()}")


def progressed(chunks: int) -> object:
    return lambda r: all(leg.chunk_count == chunks for leg in r.legs) and len(r.legs) == 2


@pytest.mark.slow
async def test_kill_9_a_worker_and_the_other_finishes_its_calls(
    kafka: KafkaBroker, workers: tuple[StreamsWorker, StreamsWorker]
) -> None:
    survivor, victim = workers
    await asyncio.to_thread(wait_split, workers)
    cluster = f"Failover{uuid.uuid4().hex[:8]}"
    recorder = f"rec-{uuid.uuid4().hex[:6]}"
    calls = [Call(key=new_call_key(cluster), t0=time.time_ns() // 1000, recorder=recorder,
                  incarnation="i1") for _ in range(CALLS)]
    keys = [c.key for c in calls]
    async with heartbeats(kafka.bootstrap, {recorder: "i1"}), Reader(kafka.bootstrap) as reader:
        before: list[Event] = []
        for call in calls:
            before += [call.started(Leg.NEAR_END), call.started(Leg.FAR_END)]
            before += [call.chunk(side, seq) for seq in range(3) for side in Leg]
        await publish(kafka.bootstrap, before)
        await reader.wait_for(keys, progressed(3), within_s=30)
        await wait_committed(kafka.bootstrap, victim.app_id)  # the victim's offsets too

        victim_partitions = set(victim.health()["assigned_partitions"])  # type: ignore[index,arg-type]
        victim.kill()
        killed_at = time.monotonic()
        after: list[Event] = []
        for call in calls:
            after += [call.chunk(side, seq) for seq in range(3, 6) for side in Leg]
            after += [call.ended(Leg.NEAR_END, 2_000_000, chunks=6),
                      call.ended(Leg.FAR_END, 2_000_000, chunks=6)]
        await publish(kafka.bootstrap, after)
        final = await reader.wait_for(keys, lambda r: r.status != CallStatus.ACTIVE,
                                      within_s=60)
        recovered_in = time.monotonic() - killed_at

        moved = [r for r in final.values() if r.first_audio_partition in victim_partitions]
        assert moved, "no call lived on the victim's partitions"
        assert {r.producer_id for r in moved} == {"survivor"}
        for record in final.values():
            assert_complete(record)
        assert set(survivor.health()["assigned_partitions"]) == set(range(6))  # type: ignore[index,arg-type]
        completed = await completed_count(reader, recorder)
        assert completed == CALLS, f"calls_completed_total {completed} != {CALLS}"
    print(f"failover: every call of the killed worker completed {recovered_in:.1f} s after kill -9")

    settings = StreamsSettings(
        kafka_bootstrap=kafka.bootstrap,
        **{k.lower().removeprefix("callrec_"): v for k, v in {**FAST_RULES, **SLOW_MEDIA}.items()},  # type: ignore[arg-type]
    )
    report = await asyncio.to_thread(replay_and_compare, settings,
                                     only=lambda key: key.startswith(cluster + ":"))
    assert report.compared == CALLS and report.differences == [], report.summary()


def assert_complete(record: CallRecord) -> None:
    assert record.status == CallStatus.COMPLETED, (record.call_key, record.abnormal_detail)
    assert [leg.chunk_count for leg in record.legs] == [6, 6]
    assert [leg.packets_received for leg in record.legs] == [60, 60]
    assert record.segments == 1


async def completed_count(reader: Reader, recorder: str) -> float:
    """calls_completed_total of the recorder summed over every window and worker."""
    deadline = time.monotonic() + 10
    total = 0.0
    while time.monotonic() < deadline:
        total = sum(m.value for m in reader.metrics if m.metric == "calls_completed_total"
                    and m.labels.get("recorder") == recorder)
        if total >= CALLS:
            await reader.poll(1.0)
            return sum(m.value for m in reader.metrics if m.metric == "calls_completed_total"
                       and m.labels.get("recorder") == recorder)
        await reader.poll()
    return total


@pytest.mark.slow
async def test_calls_move_with_their_state_when_a_worker_joins_and_leaves(
    kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The graceful rebalances: the revoke saves and commits before the partitions move; the
    joiner recovers the moved calls; the stayer gets them back (it had dropped them) from the
    joiner's changelog writes."""
    app_id = f"streams-rebalance-{uuid.uuid4().hex[:8]}"
    run_dir = tmp_path_factory.mktemp("rebalance")
    first = StreamsWorker(kafka.bootstrap, app_id, run_dir, "first", SLOW_MEDIA)
    joiner = StreamsWorker(kafka.bootstrap, app_id, run_dir, "joiner", SLOW_MEDIA)
    recorder, calls = twelve_calls("Rebalance")
    keys = [c.key for c in calls]

    try:
        first.start()
        await asyncio.to_thread(first.wait_assigned)
        async with heartbeats(kafka.bootstrap, {recorder: "i1"}), \
                Reader(kafka.bootstrap) as reader:
            await publish(kafka.bootstrap, [c.started(side) for c in calls for side in Leg])
            await publish(kafka.bootstrap, chunks(calls, range(2)))
            await reader.wait_for(keys, progressed(2), within_s=30)

            joiner.start()
            await asyncio.to_thread(wait_split, (first, joiner))
            await publish(kafka.bootstrap, chunks(calls, range(2, 4)))
            at_four = await reader.wait_for(keys, progressed(4), within_s=30)
            moved = {k for k, r in at_four.items() if r.producer_id == "joiner"}
            assert moved, "no call moved to the joining worker"

            joiner.stop()
            await asyncio.to_thread(wait_owns_all, first)
            final = await finish_complete(kafka.bootstrap, reader, calls, within_s=60)
        assert {final[k].producer_id for k in moved} == {"first"}
    finally:
        first.stop()
        joiner.stop()


def twelve_calls(cluster_prefix: str) -> tuple[str, list[Call]]:
    """A recorder id and 12 calls of a cluster of their own, recorded by it (incarnation i1)."""
    cluster = f"{cluster_prefix}{uuid.uuid4().hex[:8]}"
    recorder = f"rec-{uuid.uuid4().hex[:6]}"
    return recorder, [Call(key=new_call_key(cluster), t0=time.time_ns() // 1000,
                           recorder=recorder, incarnation="i1") for _ in range(12)]


def chunks(calls: list[Call], seqs: range) -> list[Event]:
    return [call.chunk(side, seq) for call in calls for seq in seqs for side in Leg]


async def finish_complete(bootstrap: str, reader: Reader, calls: list[Call],
                          within_s: float) -> dict[str, CallRecord]:
    """Send chunks 4 and 5 and both BYEs of every call; each must end COMPLETED with 6 chunks
    a leg."""
    ends = [c.ended(side, 2_000_000, chunks=6) for c in calls for side in Leg]
    await publish(bootstrap, chunks(calls, range(4, 6)) + ends)
    final = await reader.wait_for([c.key for c in calls],
                                  lambda r: r.status != CallStatus.ACTIVE, within_s=within_s)
    for record in final.values():
        assert_complete(record)
    return final


def wait_owns_all(worker: StreamsWorker, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if set((worker.health() or {}).get("assigned_partitions") or []) == set(range(6)):  # type: ignore[call-overload]
            return
        time.sleep(0.3)
    raise AssertionError(f"{worker.name} never got every partition: {worker.health()}")


@pytest.mark.slow
async def test_a_worker_frozen_past_the_session_timeout_does_not_resume_stale_calls(
    kafka: KafkaBroker, workers: tuple[StreamsWorker, StreamsWorker]
) -> None:
    """SIGSTOP one worker longer than the session timeout: the other takes its partitions and
    folds on. After SIGCONT the frozen worker notices the freeze, drops what it held instead of
    writing it, rejoins, gets its partitions back (the range assignor orders members by client
    id) and recovers them from the changelog; every call completes with every chunk."""
    frozen = workers[1]
    await asyncio.to_thread(wait_split, workers)
    frozen_partitions = set(frozen.health()["assigned_partitions"])  # type: ignore[index,arg-type]
    recorder, calls = twelve_calls("Frozen")
    keys = [c.key for c in calls]

    pid = frozen.process.pid()
    assert pid is not None
    async with heartbeats(kafka.bootstrap, {recorder: "i1"}), Reader(kafka.bootstrap) as reader:
        await publish(kafka.bootstrap, [c.started(side) for c in calls for side in Leg])
        await publish(kafka.bootstrap, chunks(calls, range(2)))
        await reader.wait_for(keys, progressed(2), within_s=30)
        await wait_committed(kafka.bootstrap, frozen.app_id)
        os.kill(pid, signal.SIGSTOP)
        try:
            await publish(kafka.bootstrap, chunks(calls, range(2, 4)))
            at_four = await reader.wait_for(keys, progressed(4), within_s=40)
            assert {r.producer_id for r in at_four.values()} == {"survivor"}
        finally:
            os.kill(pid, signal.SIGCONT)
            resumed_at = time.time()
        await asyncio.to_thread(wait_split, workers, 60.0, resumed_at)
        assert set(frozen.health()["assigned_partitions"]) == frozen_partitions  # type: ignore[index,arg-type]
        await finish_complete(kafka.bootstrap, reader, calls, within_s=40)
    assert "stood still" in frozen.log()
