"""A broker outage is reported and retried: the worker outlives it and folds what comes after."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from callrec.avro.events import CallStatus
from callrec.infra.kafka import KafkaBroker
from tests.streams.factory import Call, new_call_key
from tests.streams.harness import Reader, StreamsWorker, heartbeats, publish, running_worker

OUTAGE_S = 10.0


@pytest.fixture
def worker(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamsWorker]:
    with running_worker(kafka.bootstrap, f"streams-outage-{uuid.uuid4().hex[:8]}",
                         tmp_path_factory.mktemp("outage"), "outage-worker") as proc:
        yield proc


@pytest.mark.slow
async def test_the_worker_outlives_a_broker_outage(
    kafka: KafkaBroker, worker: StreamsWorker
) -> None:
    await asyncio.to_thread(kafka.stop)
    try:
        await asyncio.sleep(OUTAGE_S)  # the outage itself, not a wait for something
        assert worker.process.pid() is not None, worker.log()
    finally:
        await asyncio.to_thread(kafka.start)
    recorder = f"rec-{uuid.uuid4().hex[:6]}"
    call = Call(key=new_call_key("Outage"), t0=time.time_ns() // 1000, recorder=recorder,
                incarnation="i1")
    known = worker.recorders_known()
    async with heartbeats(kafka.bootstrap, {recorder: "i1"}), Reader(kafka.bootstrap) as reader:
        await worker.wait_recorders(known + 1, within_s=60)
        await publish(kafka.bootstrap, call.simple(chunks=2))
        try:
            got = await reader.wait_for([call.key], lambda r: r.status != CallStatus.ACTIVE,
                                        within_s=60)
        except AssertionError as e:
            raise AssertionError(f"{e}; worker health {worker.health()}") from e
    assert got[call.key].status == CallStatus.COMPLETED
    log = worker.process.log_file.read_text().lower()
    assert "coordinator" in log or "connect" in log  # the outage was reported, not swallowed
