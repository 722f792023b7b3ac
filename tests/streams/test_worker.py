"""One real worker process against the real broker: each verdict end to end, duplicates and
reordering, dead letters, metrics, and a replay that agrees with what the worker published."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer

from callrec.avro.events import (
    AbnormalReason,
    AudioChunk,
    CallRecord,
    CallStatus,
    Leg,
    LegEndReason,
)
from callrec.avro.topics import LIFECYCLE
from callrec.eventlog import EventPublisher
from callrec.infra.kafka import KafkaBroker
from callrec.streams.replay import replay_and_compare
from callrec.streams.settings import StreamsSettings
from tests.streams.core import fold, record, semantic
from tests.streams.factory import Call, new_call_key
from tests.streams.harness import (
    FAST_RULES,
    Reader,
    StreamsWorker,
    heartbeats,
    publish,
    running_worker,
)

CLUSTER = f"StreamsWorkerTest{uuid.uuid4().hex[:8]}"
APP_ID = f"streams-test-{uuid.uuid4().hex[:8]}"


def now_us() -> int:
    return time.time_ns() // 1000


def new_call(recorder: str = "rec-a", incarnation: str = "inc-1") -> Call:
    return Call(key=new_call_key(CLUSTER), t0=now_us(), recorder=recorder, incarnation=incarnation)


def terminal(record: CallRecord) -> bool:
    return record.status != CallStatus.ACTIVE


@pytest.fixture(scope="module")
def worker(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamsWorker]:
    data_dir = tmp_path_factory.mktemp("streams")
    with running_worker(kafka.bootstrap, APP_ID, data_dir, "worker-1") as proc:
        yield proc


async def test_each_verdict_end_to_end(kafka: KafkaBroker, worker: StreamsWorker) -> None:
    tag = uuid.uuid4().hex[:6]
    live = {f"alive-{tag}": "i1", f"dies-{tag}": "i1", f"restarts-{tag}": "i1"}
    known = worker.recorders_known()
    async with heartbeats(kafka.bootstrap, live) as recorders, Reader(kafka.bootstrap) as reader:
        await worker.wait_recorders(known + len(live))  # before the calls start
        alive, dies, restarts = (new_call(r, "i1") for r in list(live))
        completed = alive.simple(chunks=3)
        lost = [dies.started(Leg.NEAR_END), dies.started(Leg.FAR_END), dies.chunk(Leg.NEAR_END, 0)]
        restarted = [restarts.started(Leg.NEAR_END), restarts.started(Leg.FAR_END)]
        media = new_call(f"alive-{tag}", "i1")
        silent = [media.started(Leg.NEAR_END), media.started(Leg.FAR_END),
                  media.chunk(Leg.NEAR_END, 0), media.chunk(Leg.FAR_END, 0)]
        session = new_call(f"alive-{tag}", "i1")
        expiring = [session.started(side, session_expires_s=2).model_copy(
            update={"media_direction": "inactive"}) for side in (Leg.NEAR_END, Leg.FAR_END)]
        half = new_call(f"alive-{tag}", "i1")
        alone = [half.started(Leg.NEAR_END), half.chunk(Leg.NEAR_END, 0)]
        shut = new_call(f"alive-{tag}", "i1")
        shutdown = shut.simple(chunks=1, end=LegEndReason.RECORDER_SHUTDOWN)
        await publish(kafka.bootstrap, [*completed, *lost, *restarted, *silent, *expiring,
                                        *alone, *shutdown])
        started = time.monotonic()
        del recorders[f"dies-{tag}"]
        recorders[f"restarts-{tag}"] = "i2"
        expected = {
            alive.key: (CallStatus.COMPLETED, None),
            dies.key: (CallStatus.ABNORMAL, AbnormalReason.RECORDER_LOST),
            restarts.key: (CallStatus.ABNORMAL, AbnormalReason.RECORDER_LOST),
            media.key: (CallStatus.ABNORMAL, AbnormalReason.MEDIA_TIMEOUT),
            session.key: (CallStatus.ABNORMAL, AbnormalReason.SESSION_EXPIRED),
            half.key: (CallStatus.ABNORMAL, AbnormalReason.HALF_CALL),
            shut.key: (CallStatus.ABNORMAL, AbnormalReason.ENDED_WITHOUT_BYE),
        }
        got = await reader.wait_for(expected, terminal, within_s=20)
        assert time.monotonic() - started < 10  # every verdict within 10 s
        assert {k: (r.status, r.abnormal_reason) for k, r in got.items()} == expected
        assert got[alive.key].first_audio_offset is not None
        assert got[dies.key].legs[0].chunk_count + got[dies.key].legs[1].chunk_count == 1
        assert all(leg.ended_at is not None for record in got.values() for leg in record.legs)
        assert "i2" in (got[restarts.key].abnormal_detail or "")
        await _wait_metrics(reader, f"alive-{tag}")


async def _wait_metrics(reader: Reader, recorder: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        mine = [m for m in reader.metrics if m.labels.get("recorder") == recorder]
        names = {(m.metric, m.labels.get("reason")) for m in mine if m.value > 0}
        if {("calls_completed_total", None), ("calls_abnormal_total", "MEDIA_TIMEOUT"),
                ("calls_started_total", None), ("audio_bytes_total", None)} <= names:
            return
        await reader.poll()
    raise AssertionError(f"metrics missing; got {sorted(names)}")


async def test_duplicates_and_reordering_give_the_fold_of_the_events(
    kafka: KafkaBroker, worker: StreamsWorker
) -> None:
    recorder = f"rec-{uuid.uuid4().hex[:6]}"
    call = new_call(recorder, "i1")
    events = call.simple(chunks=6)
    shuffled = events + random.sample(events, 5)
    random.shuffle(shuffled)
    async with heartbeats(kafka.bootstrap, {recorder: "i1"}), Reader(kafka.bootstrap) as reader:
        publisher = EventPublisher(kafka.bootstrap, "streams-test-dups")
        await publisher.start()
        try:
            audio_offsets = []
            for event in shuffled:
                meta = await publisher.publish(event)
                if isinstance(event, AudioChunk):
                    audio_offsets.append((meta.partition, meta.offset))
        finally:
            await publisher.stop()
        got = (await reader.wait_for([call.key], terminal, within_s=20))[call.key]
    expected = fold(events)
    assert got.status == CallStatus.COMPLETED
    assert (got.first_audio_partition, got.first_audio_offset) == min(audio_offsets)
    drop = {"first_audio_partition", "first_audio_offset", "status", "ended_at"}
    mine = {k: v for k, v in semantic(got).items() if k not in drop}
    theirs = {k: v for k, v in semantic(record(expected)).items() if k not in drop}
    assert mine == theirs
    assert [leg.chunk_count for leg in got.legs] == [6, 6]


async def test_bad_events_are_dead_lettered_and_the_worker_goes_on(
    kafka: KafkaBroker, worker: StreamsWorker
) -> None:
    recorder = f"rec-{uuid.uuid4().hex[:6]}"
    call = new_call(recorder, "i1")
    wrong_refci = call.started(Leg.NEAR_END).model_copy(update={"refci": "nope"})
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        junk = await producer.send_and_wait(LIFECYCLE.name, b"not avro", key=call.key.encode())
    finally:
        await producer.stop()
    async with heartbeats(kafka.bootstrap, {recorder: "i1"}), Reader(kafka.bootstrap) as reader:
        await publish(kafka.bootstrap, [wrong_refci, *call.simple(chunks=2)])
        got = (await reader.wait_for([call.key], terminal, within_s=20))[call.key]
        assert got.status == CallStatus.COMPLETED
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            mine = [d for d in reader.dead if d.source_key == call.key.encode()]
            if len(mine) >= 2:
                break
            await reader.poll()
    kinds = {d.error_type: d for d in mine}
    assert set(kinds) == {"UndecodableEvent", "InvariantViolated"}
    assert kinds["UndecodableEvent"].source_offset == junk.offset
    assert kinds["UndecodableEvent"].payload == b"not avro"
    assert "x-refci" in kinds["InvariantViolated"].reason


async def test_replay_rebuilds_what_the_worker_published(
    kafka: KafkaBroker, worker: StreamsWorker
) -> None:
    # its own calls, not those the tests before it left: one completed, one lost with its recorder
    cluster, tag = f"Replay{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:6]
    live = {f"stays-{tag}": "i1", f"dies-{tag}": "i1"}
    calls = [Call(key=new_call_key(cluster), t0=now_us(), recorder=r, incarnation="i1")
             for r in live]  # fmt: skip
    async with heartbeats(kafka.bootstrap, live) as recorders, Reader(kafka.bootstrap) as reader:
        await publish(kafka.bootstrap, [*calls[0].simple(chunks=2),
                                        calls[1].started(Leg.NEAR_END)])  # fmt: skip
        del recorders[f"dies-{tag}"]
        await reader.wait_for([c.key for c in calls], terminal, within_s=20)
    settings = StreamsSettings(
        kafka_bootstrap=kafka.bootstrap,
        **{k.lower().removeprefix("callrec_"): v for k, v in FAST_RULES.items()},  # type: ignore[arg-type]
    )
    report = await asyncio.to_thread(
        replay_and_compare, settings, only=lambda key: key.startswith(cluster + ":")
    )
    assert report.compared == len(calls), report.summary()
    assert report.differences == [], report.summary()


def test_health_file_is_fresh(worker: StreamsWorker) -> None:
    health = worker.health()
    assert health is not None
    assert time.time() - float(health["at"]) < 5  # type: ignore[arg-type]
    assert health["assigned_partitions"] == [0, 1, 2, 3, 4, 5]


