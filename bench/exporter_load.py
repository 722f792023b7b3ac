"""Metrics exporter benchmark, run by hand: `.venv/bin/python bench/exporter_load.py`.

1. Fold: CPU-seconds per 1,000 `rec.metrics.v1` samples through `route` (Avro decode + checks +
   fold), next to the ceiling measured in the same run: bare `codec.decode` of the same bytes;
   and per 1,000 audio chunks (only `event_time` is read) next to a full decode of them.
2. Through Kafka: a broker started here (or --bootstrap), ``--samples`` samples published first,
   then the real exporter (its Kafka session, in this process) reads them; CPU-seconds of this
   process per 1,000 samples, from the exporter's start until it has counted the last one.
3. Scrape: 50 recorders (every per-recorder series, every abnormal reason) and 20 consumer groups
   x 7 topics; milliseconds per `/metrics` over HTTP and per in-process render, next to the
   ceiling: prometheus-client serializing the same families prebuilt (no state walk). Goal
   < 100 ms per scrape.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka.structs import TopicPartition
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.registry import Collector

from callrec.avro import codec
from callrec.avro.events import AbnormalReason, Leg, MetricSample
from callrec.avro.topics import ALL_TOPICS, AUDIO, METRICS
from callrec.eventlog import EventPublisher
from callrec.exporter.collector import SelfStats, StateCollector
from callrec.exporter.loop import Exporter
from callrec.exporter.reader import Read, route
from callrec.exporter.settings import ExporterSettings
from callrec.exporter.state import ExporterState
from callrec.infra.kafka import KafkaBroker, ensure_kafka_jars
from callrec.infra.procs import free_port
from callrec.infra.topics import ensure_topics
from tests.conftest import cache_dir
from tests.exporter.events import beat, now_us, sample
from tests.streams.factory import Call, packets

PER_RECORDER = ("calls_started_total", "calls_completed_total", "audio_bytes_total",
                "audio_packets_total", "audio_packets_lost_total", "calls_active")


def windows(recorders: int, count: int, producer: str = "streams-1") -> list[MetricSample]:
    """What one call-state worker writes per 10 s window: every per-recorder figure, its
    roll-up, and a few abnormal reasons, for ``count`` windows."""
    t0 = now_us() - count * 10_000_000
    out: list[MetricSample] = []
    window = 0
    while len(out) < count:
        for r in range(recorders):
            labels = {"recorder": f"rec-{r}"}
            out += [sample(metric, 3, labels, window, producer, t0) for metric in PER_RECORDER]
            out.append(sample("calls_abnormal_total", 1,
                              {**labels, "reason": "MEDIA_TIMEOUT"}, window, producer, t0))
        out += [sample(metric, 3 * recorders, {}, window, producer, t0) for metric in PER_RECORDER]
        window += 1
    return out[:count]


def cpu_per_thousand(func: object, items: list[bytes]) -> float:
    assert callable(func)
    started = time.process_time()
    for item in items:
        func(item)
    return (time.process_time() - started) / len(items) * 1000


def bench_fold(count: int) -> None:
    encoded = [codec.encode(s) for s in windows(50, count)]
    state = ExporterState()
    ours = cpu_per_thousand(lambda v: route(state, Read(METRICS.name, v), 0), encoded)
    ceiling = cpu_per_thousand(codec.decode, encoded)
    print(f"fold: {ours * 1000:.1f} ms CPU per 1,000 samples "
          f"({1000 / ours:,.0f} samples per CPU-second); bare decode {ceiling * 1000:.1f} ms "
          f"-> {ceiling / ours:.2f} of the ceiling")
    call = Call(t0=now_us())
    chunks = [codec.encode(call.chunk(Leg.NEAR_END, seq).model_copy(
        update={"packets": packets(10, now_us(), 160)})) for seq in range(count // 4)]
    ours = cpu_per_thousand(lambda v: route(state, Read(AUDIO.name, v), now_us()), chunks)
    full = cpu_per_thousand(codec.decode, chunks)
    print(f"audio chunks (header only): {ours * 1000:.2f} ms CPU per 1,000 chunks "
          f"({1000 / ours:,.0f} per CPU-second); a full decode costs {full * 1000:.1f} ms "
          f"({full / ours:.0f}x more)")


async def bench_kafka(bootstrap: str, count: int) -> None:
    producer = f"bench-{uuid.uuid4().hex[:6]}"
    samples = windows(50, count, producer)
    publisher = EventPublisher(bootstrap, "exporter-bench")
    await publisher.start()
    try:
        acks = await asyncio.gather(*[await publisher.enqueue(s) for s in samples])
    finally:
        await publisher.stop()
    last: dict[TopicPartition, int] = {}
    for ack in acks:
        tp = TopicPartition(ack.topic, ack.partition)
        last[tp] = max(last.get(tp, -1), ack.offset)
    settings = ExporterSettings(kafka_bootstrap=bootstrap, exporter_read_audio=False,
                                exporter_lookback_s=1)
    exporter = Exporter(settings)
    stopping = asyncio.Event()
    wall, cpu = time.monotonic(), time.process_time()
    task = asyncio.create_task(exporter.run(stopping))
    # the exporter signals nothing when it reaches an offset: poll its positions
    while any(exporter.positions.get(tp, 0) <= offset  # noqa: ASYNC110
              for tp, offset in last.items()):
        await asyncio.sleep(0.02)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    stopping.set()
    await task
    read = exporter.stats.events.get(METRICS.name, 0)
    print(f"through Kafka: {read:,} samples read (all of rec.metrics.v1) in {wall:.2f} s wall, "
          f"{cpu:.2f} CPU-s -> {cpu / read * 1000 * 1000:.1f} ms CPU per 1,000 samples "
          f"({read / cpu:,.0f} per CPU-second)")


class Prebuilt(Collector):
    def __init__(self, families: list[object]) -> None:
        self.families = families

    def collect(self):  # type: ignore[no-untyped-def]
        yield from self.families


def full_state(recorders: int, groups: int) -> ExporterState:
    state = ExporterState()
    for s in windows(recorders, recorders * (len(PER_RECORDER) + 1)):
        route(state, Read(METRICS.name, codec.encode(s)), 0)
    for r in range(recorders):
        state.apply_heartbeat(beat(f"rec-{r}", now_us()))
        for reason in AbnormalReason:
            state.apply_sample(sample("calls_abnormal_total", 1,
                                      {"recorder": f"rec-{r}", "reason": reason.value}, 0))
    state.lags = {(f"group-{g}", topic.name): g * 10 for g in range(groups)
                  for topic in ALL_TOPICS}
    for h in range(1000):
        state.archive_latency.observe(h / 100)
        state.chunk_delivery.observe(h / 1000)
    return state


def bench_scrape(recorders: int, groups: int, rounds: int) -> None:
    state = full_state(recorders, groups)
    collector = StateCollector(state, SelfStats(), threading.Lock())
    ours_registry = CollectorRegistry(auto_describe=False)
    ours_registry.register(collector)
    ceiling_registry = CollectorRegistry(auto_describe=False)
    ceiling_registry.register(Prebuilt(list(collector.collect())))
    text = generate_latest(ours_registry)
    series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))

    def per_render(registry: CollectorRegistry) -> float:
        started = time.perf_counter()
        for _ in range(rounds):
            generate_latest(registry)
        return (time.perf_counter() - started) / rounds * 1000

    ours, ceiling = per_render(ours_registry), per_render(ceiling_registry)
    port = free_port()
    server, _thread = start_http_server(port, "127.0.0.1", registry=ours_registry)
    try:
        started = time.perf_counter()
        for _ in range(rounds):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
                response.read()
        http = (time.perf_counter() - started) / rounds * 1000
    finally:
        server.shutdown()
    print(f"scrape, {recorders} recorders x {groups} groups: {series:,} series, "
          f"{len(text) / 1024:.0f} KiB; render {ours:.1f} ms (ceiling, prebuilt families "
          f"{ceiling:.1f} ms -> {ceiling / ours:.2f} of it); over HTTP {http:.1f} ms "
          f"(goal < 100 ms)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    bench_fold(args.samples)
    bench_scrape(50, 20, args.rounds)
    if args.bootstrap:
        asyncio.run(bench_kafka(args.bootstrap, args.samples))
        return
    with tempfile.TemporaryDirectory() as tmp:
        broker = KafkaBroker(libs=ensure_kafka_jars(cache_dir()), data_dir=Path(tmp),
                             port=free_port(), controller_port=free_port())
        broker.start()
        try:
            asyncio.run(ensure_topics(broker.bootstrap, 6))
            asyncio.run(bench_kafka(broker.bootstrap, args.samples))
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
