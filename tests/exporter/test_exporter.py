"""The exporter against the real broker: bad metric samples are dead-lettered and counted, and
a broker restart neither stops /metrics nor counts a window twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer

from callrec.avro import codec
from callrec.avro.events import DeadLetter, Event
from callrec.avro.topics import DEADLETTER, METRICS
from callrec.eventlog import EventPublisher
from callrec.exporter.loop import serve
from callrec.exporter.settings import ExporterSettings
from callrec.infra.kafka import KafkaBroker
from callrec.infra.procs import free_port
from tests.exporter.events import beat, now_us, sample
from tests.exporter.harness import scrape, value, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def exporter(kafka: KafkaBroker) -> AsyncIterator[ExporterSettings]:
    settings = ExporterSettings(
        kafka_bootstrap=kafka.bootstrap, exporter_port=free_port(),
        exporter_id=f"exporter-test-{uuid.uuid4().hex[:8]}", exporter_lag_interval_s=1.0,
        exporter_retry_s=0.5,
    )
    stopping = asyncio.Event()
    task = asyncio.create_task(serve(settings, stopping))
    try:
        yield settings
    finally:
        stopping.set()
        await asyncio.wait_for(task, 30)


def url(settings: ExporterSettings) -> str:
    return f"http://127.0.0.1:{settings.exporter_port}/metrics"


async def publish(bootstrap: str, events: list[Event], raw: list[bytes] = ()) -> None:  # type: ignore[assignment]
    publisher = EventPublisher(bootstrap, "exporter-test")
    await publisher.start()
    try:
        for payload in raw:
            await (await publisher.enqueue_encoded(METRICS.name, b"junk", payload,
                                                   "MetricSample"))
        for event in events:
            await publisher.publish(event)
    finally:
        await publisher.stop()


async def dead_letters_of(bootstrap: str, producer_id: str, count: int) -> list[DeadLetter]:
    consumer = AIOKafkaConsumer(DEADLETTER.name, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[DeadLetter] = []
    try:
        async with asyncio.timeout(20):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        letter = codec.decode(record.value or b"")
                        if isinstance(letter, DeadLetter) and letter.producer_id == producer_id:
                            found.append(letter)
    finally:
        await consumer.stop()
    return found


async def test_a_malformed_metric_sample_is_dead_lettered_counted_and_skipped(
    kafka: KafkaBroker, exporter: ExporterSettings
) -> None:
    recorder = f"rec-{uuid.uuid4().hex[:8]}"
    t0 = now_us()
    junk = b"\xc3\x01 not avro at all"
    bad_labels = sample("calls_completed_total", 1, {"recorder": recorder, "call": "c:1"}, 0,
                        t0=t0)
    good = sample("calls_completed_total", 4, {"recorder": recorder}, 0, t0=t0)
    await publish(kafka.bootstrap, [bad_labels, good], raw=[junk])

    def counted() -> bool:
        series = scrape(url(exporter))
        return (value(series, "callrec_calls_completed_total", recorder=recorder) == 4
                and all(value(series, "callrec_exporter_rejected_records_total",
                              topic=METRICS.name, reason=reason) is not None
                        for reason in ("UndecodableEvent", "InvalidSample")))

    await wait_until(counted, 30, "the good sample counted and both bad ones rejected")
    letters = await dead_letters_of(kafka.bootstrap, exporter.exporter_id, 2)
    assert {letter.error_type for letter in letters} == {"UndecodableEvent", "InvalidSample"}
    assert {letter.source_topic for letter in letters} == {METRICS.name}
    assert junk in {letter.payload for letter in letters}
    assert any("['recorder']" in letter.reason for letter in letters)


@pytest.mark.slow
async def test_the_exporter_survives_a_broker_restart_and_counts_each_window_once(
    kafka: KafkaBroker, exporter: ExporterSettings
) -> None:
    recorder = f"rec-{uuid.uuid4().hex[:8]}"
    t0 = now_us()
    await publish(kafka.bootstrap, [
        sample("audio_packets_total", 100, {"recorder": recorder}, 0, t0=t0),
        beat(recorder, now_us())])
    await wait_until(lambda: value(scrape(url(exporter)), "callrec_audio_packets_received_total",
                                   recorder=recorder) == 100, 30, "first window counted")
    await asyncio.to_thread(kafka.stop)
    await wait_until(lambda: value(scrape(url(exporter)), "callrec_exporter_kafka_up") == 0,
                     30, "/metrics still served, saying Kafka is down")
    await asyncio.to_thread(kafka.start)
    await publish(kafka.bootstrap, [
        sample("audio_packets_total", 50, {"recorder": recorder}, 1, t0=t0),
        beat(recorder, now_us())])

    def recovered() -> bool:
        series = scrape(url(exporter))
        return (value(series, "callrec_exporter_kafka_up") == 1
                and value(series, "callrec_recorder_up", recorder=recorder) == 1
                and value(series, "callrec_audio_packets_received_total",
                          recorder=recorder) == 150)

    await wait_until(recovered, 60, "Kafka back, the second window counted, the first not again")


async def test_a_restarted_exporter_reports_the_same_totals(kafka: KafkaBroker) -> None:
    recorder = f"rec-{uuid.uuid4().hex[:8]}"
    t0 = now_us()
    await publish(kafka.bootstrap, [
        sample("calls_started_total", n, {"recorder": recorder}, n, t0=t0) for n in (1, 2, 3)])

    async def one_exporter_run() -> None:
        settings = ExporterSettings(kafka_bootstrap=kafka.bootstrap, exporter_port=free_port(),
                                    exporter_read_audio=False)
        stopping = asyncio.Event()
        task = asyncio.create_task(serve(settings, stopping))
        try:
            await wait_until(lambda: value(scrape(url(settings)), "callrec_calls_started_total",
                                           recorder=recorder) == 6,
                             30, "the three windows summed once")
        finally:
            stopping.set()
            await asyncio.wait_for(task, 30)

    await one_exporter_run()
    await one_exporter_run()  # the same history, read again by a new process
