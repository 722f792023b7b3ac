"""Reopening through a real worker process: a hold past the segment window, a recorder that
stops heartbeating and comes back; `callrec streams replay` then agrees with what the worker
published for each call."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from callrec.avro.events import AbnormalReason, CallRecord, CallStatus, Event, Leg
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
    running_worker,
)

CLUSTER = f"StreamsReopen{uuid.uuid4().hex[:8]}"
SIDES = (Leg.NEAR_END, Leg.FAR_END)
S = 1_000_000


@pytest.fixture(scope="module")
def worker(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamsWorker]:
    with running_worker(kafka.bootstrap, f"reopen-{uuid.uuid4().hex[:8]}",
                         tmp_path_factory.mktemp("streams"), "worker-reopen") as proc:
        yield proc


def since(call: Call) -> int:
    """Now, as an offset from the call's t0 (the factory's times are offsets)."""
    return time.time_ns() // 1000 - call.t0


def audio(call: Call, first_seq: int, count: int, segment: int = 0) -> list[Event]:
    """``count`` chunks a leg, stamped from now on (200 ms each)."""
    t = since(call)
    return [call.chunk(side, seq, segment=segment, t=t + (seq - first_seq + 1) * 200_000)
            for seq in range(first_seq, first_seq + count) for side in SIDES]


def bye(call: Call, chunks: int, segment: int = 0) -> list[Event]:
    return [call.ended(side, since(call) + S, segment=segment, chunks=chunks) for side in SIDES]


def settled(status: CallStatus, reopened: int = 0, segments: int = 1) -> object:
    def done(record: CallRecord) -> bool:
        return (record.status, record.reopened, record.segments) == (status, reopened, segments)
    return done


async def test_a_hold_past_the_window_reopens_and_completes_the_call(
    kafka: KafkaBroker, worker: StreamsWorker
) -> None:
    recorder = f"rec-{uuid.uuid4().hex[:6]}"
    call = Call(key=new_call_key(CLUSTER), t0=time.time_ns() // 1000, recorder=recorder)
    async with heartbeats(kafka.bootstrap, {recorder: call.incarnation}), \
            Reader(kafka.bootstrap) as reader:
        await publish(kafka.bootstrap, [*(call.started(side, since(call)) for side in SIDES),
                                        *audio(call, 0, 3)])
        await publish(kafka.bootstrap, bye(call, 3))
        first = (await reader.wait_for([call.key], settled(CallStatus.COMPLETED), 20))[call.key]
        await publish(kafka.bootstrap, [call.started(side, since(call), segment=1)
                                        for side in SIDES])
        await reader.wait_for([call.key], settled(CallStatus.ACTIVE, 1, 2), 20)
        await publish(kafka.bootstrap, [*audio(call, 0, 3, segment=1), *bye(call, 3, 1)])
        final = (await reader.wait_for([call.key], settled(CallStatus.COMPLETED, 1, 2), 20)
                 )[call.key]
    assert final.version > first.version and final.ended_at > first.ended_at  # type: ignore[operator]
    assert [leg.chunk_count for leg in final.legs] == [3, 3, 3, 3]
    await assert_replay_agrees(kafka, call.key)


async def test_a_recorder_that_comes_back_withdraws_recorder_lost(
    kafka: KafkaBroker, worker: StreamsWorker
) -> None:
    recorder = f"rec-{uuid.uuid4().hex[:6]}"
    call = Call(key=new_call_key(CLUSTER), t0=time.time_ns() // 1000, recorder=recorder)
    async with heartbeats(kafka.bootstrap, {recorder: call.incarnation}) as beating, \
            Reader(kafka.bootstrap) as reader:
        await publish(kafka.bootstrap, [*(call.started(side, since(call)) for side in SIDES),
                                        *audio(call, 0, 3)])
        del beating[recorder]  # frozen: no heartbeat, no audio
        lost = (await reader.wait_for([call.key], settled(CallStatus.ABNORMAL), 20))[call.key]
        assert lost.abnormal_reason == AbnormalReason.RECORDER_LOST
        beating[recorder] = call.incarnation  # the same run resumes
        await reader.wait_for([call.key], settled(CallStatus.ACTIVE, 1), 20)
        await publish(kafka.bootstrap, [*audio(call, 3, 5), *bye(call, 8)])
        final = (await reader.wait_for([call.key], settled(CallStatus.COMPLETED, 1), 20)
                 )[call.key]
    assert [leg.chunk_count for leg in final.legs] == [8, 8]
    assert all(leg.end_reason == "BYE" for leg in final.legs)
    await assert_replay_agrees(kafka, call.key)


async def assert_replay_agrees(kafka: KafkaBroker, key: str) -> None:
    """`callrec streams replay` rebuilds the call from the log exactly as the worker did."""
    settings = StreamsSettings(
        kafka_bootstrap=kafka.bootstrap,
        **{k.lower().removeprefix("callrec_"): v for k, v in FAST_RULES.items()},  # type: ignore[arg-type]
    )
    report = await asyncio.to_thread(replay_and_compare, settings, 0.0, lambda k: k == key)
    assert report.compared == 1, report.summary()
    assert report.differences == [], report.summary()
