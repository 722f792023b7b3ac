"""Call-state benchmark, run by hand: `.venv/bin/python bench/streams_fold.py [--calls 1000]
[--paced SECONDS] [--py-spy FILE]`.

Every figure is per CPU-second (of this process, or of the worker process) and as a ratio to
the ceilings measured first in the same run (below).

1. Pure fold (the ceiling): events per CPU-second that ``apply`` folds (the contract's decoded
   events, no I/O); then Avro decoding alone (the contract decode, and the skimming decode the
   worker uses), then the worker's processor (decode + fold + JSON state per commit + snapshots
   written as the worker sends them) with an in-memory table. Goal >= 20,000 events/s per core
   (1,000 concurrent calls x 2 legs x 5 chunks/s = 10,000/s, with 2x headroom).
2. Through Kafka: a broker started here (or --bootstrap), ``calls`` calls' events published
   first, then ONE worker process folds them (changelog, snapshots and commits included);
   events/s from its first to its last fold, and its CPU time, so the figure is per core.
   Goals (issue 14): >= 20,000 per CPU-second and >= 0.5 of the pure fold.
   With ``--paced SECONDS`` instead: the worker runs first, and ``calls`` calls publish like a
   site's (10 events/s a call: 2 legs x 5 chunks/s, staggered over each 200 ms) for that long;
   the worker's CPU over the window per event folded, and its share of a core at that rate. A
   paced run has the batches, ticks and snapshots per event of a site, whatever the load on the
   machine, so paced runs compare where burst runs (catch-up, ticks stretched by the load) do not.
3. Failover: two workers, kill -9 one; seconds until a probe call on one of the killed worker's
   partitions gets its snapshot from the survivor (dominated by the group session timeout).

Two ceilings, both measured first in the same run: the pure fold (``apply`` on events already
decoded, the issue's ceiling) and "skimming decode + fold" in process (what any worker must do
per record before Kafka, state and snapshots): the worker's ratio is printed to both.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import NamedTuple

# Imported before this tree goes on sys.path: a tree first on PYTHONPATH laid out as the
# ``callrec`` package (an alternated run's "before", see streams/README.md) is then the one used.
import callrec  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.*


from callrec.avro import codec
from callrec.avro.events import AudioChunk, CallStatus, Event, Leg
from callrec.avro.topics import AUDIO
from callrec.eventlog import EventPublisher
from callrec.infra.kafka import KafkaBroker, ensure_kafka_jars
from callrec.infra.procs import free_port
from callrec.infra.topics import ensure_topics
from callrec.streams import main as worker_main
from callrec.streams.fold import apply, micros
from callrec.streams.model import CallState, SourcePosition
from callrec.streams.processor import CallProcessor, Incoming
from callrec.streams.recorders import RecordersView
from callrec.streams.rules import Rules
from tests.conftest import cache_dir
from tests.streams.factory import Call, new_call_key, packets
from tests.streams.harness import FAST_RULES, Reader, StreamsWorker, heartbeats, publish


def workload(calls: int, chunks: int) -> list[Event]:
    """Each call: two LegStarted, ``chunks`` chunks per leg of 10 x 160-byte packets, two BYEs,
    interleaved across calls as a recorder with ``calls`` live calls would publish them."""
    now = time.time_ns() // 1000
    made = [Call(key=new_call_key("Bench"), t0=now) for _ in range(calls)]
    events: list[Event] = []
    for call in made:
        events += [call.started(Leg.NEAR_END), call.started(Leg.FAR_END)]
    for seq in range(chunks):
        for call in made:
            for side in Leg:
                chunk = call.chunk(side, seq)
                events.append(chunk.model_copy(update={"packets": packets(10, now, 160)}))
    for call in made:
        events += [call.ended(side, (chunks + 1) * 200_000, chunks=chunks) for side in Leg]
    return events


SAVE_EVERY = 10_000
"""The worker saves the changed calls once per commit (0.5 s): 10,000 events at the goal rate."""


class NullEmitter:
    def snapshot(self, partition: int, key: bytes, value: bytes) -> None: ...
    def dead_letter(self, letter: object) -> None: ...
    def changelog(self, partition: int, key: bytes, value: bytes | None) -> None: ...


class Ceilings(NamedTuple):
    fold: float
    """``apply`` on decoded contract events (the issue's ceiling)."""
    decode_fold: float | None = None
    """skimming decode + ``apply``, in process."""


ROW: list[str] = []
"""The run's figures as cells of a README table row (printed last)."""
LABELS = {
    "pure fold (apply, contract events)": "pure fold",
    "skimming decode + fold, in process (2nd ceiling)": "decode+fold",
    "Avro decode alone (contract: fastavro + pydantic)": "contract decode",
    "Avro decode alone (skimming chunks, as the worker)": "skim",
    "processor (decode+fold+state per 10,000+snapshots)": "processor",
    "worker + Kafka (per CPU-second of the worker)": "**worker + Kafka**",
    "worker + Kafka, paced (per CPU-second of the worker)": "**worker + Kafka, paced**",
}


def rate(name: str, events: int, cpu_s: float, ceilings: Ceilings | None) -> float:
    """Print ``name``'s events per CPU-second and its ratios to the ceilings; return the rate."""
    per_s = events / cpu_s
    ratio, cell = " (the ceiling)", ""
    if ceilings is not None:
        ratio = f" = {per_s / ceilings.fold:.2f} of the pure fold"
        cell = f" = {per_s / ceilings.fold:.2f}"
        if ceilings.decode_fold:
            ratio += f", {per_s / ceilings.decode_fold:.2f} of decode+fold"
            cell += f" / {per_s / ceilings.decode_fold:.2f}"
    print(f"{name:<58} {per_s:>8,.0f} events per CPU-second{ratio}", flush=True)
    ROW.append(f"{LABELS.get(name, name)} {per_s:,.0f}{cell}")
    return per_s


def print_row(started_load: str) -> None:
    """One line with every figure a README row needs (x / y: ratio to the pure fold / to
    skimming decode + fold of this run)."""
    one = os.getloadavg()[0]
    print(f"row: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {started_load} -> "
          f"{one:.1f} | " + " | ".join(ROW))


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def worker_collector() -> str:
    """The in-process figures run under the worker's garbage-collector settings, with this
    process's workload (~1 million objects: every event whole) frozen out of the collector: the
    worker holds no such heap, and traversing it was a quarter of the in-process figures' CPU
    (gc.callbacks), which made the ceilings low."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*worker_main.GC_THRESHOLDS)
    return f"collector thresholds {gc.get_threshold()}, {gc.get_freeze_count():,} objects frozen"


def bench_pure(events: list[Event]) -> Ceilings:
    """Print the in-process figures; return the ceilings (events per CPU-second)."""
    encoded = [codec.encode(e) for e in events]
    print(worker_collector())
    start = time.process_time()
    states: dict[str, CallState | None] = {}
    for n, event in enumerate(events):
        key = event.call_key  # type: ignore[attr-defined]
        states[key], _ = apply(states.get(key), event, SourcePosition("rec.audio.v1", 0, n))
    n = len(events)
    fold = rate("pure fold (apply, contract events)", n, time.process_time() - start, None)
    start = time.process_time()
    states = {}
    for n, data in enumerate(encoded):
        decoded = codec.decode_skimming(data)
        key = decoded.call_key  # type: ignore[union-attr]
        states[key], _ = apply(states.get(key), decoded,  # type: ignore[arg-type]
                               SourcePosition("rec.audio.v1", 0, n))
    n = len(events)
    ceiling = Ceilings(fold, rate("skimming decode + fold, in process (2nd ceiling)", n,
                                  time.process_time() - start, Ceilings(fold)))
    start = time.process_time()
    for data in encoded:
        codec.decode(data)
    rate("Avro decode alone (contract: fastavro + pydantic)", n, time.process_time() - start,
         ceiling)
    start = time.process_time()
    for data in encoded:
        codec.decode_skimming(data)
    rate("Avro decode alone (skimming chunks, as the worker)", n, time.process_time() - start,
         ceiling)

    processor = CallProcessor(
        worker_id="bench", rules=Rules(), emitter=NullEmitter(),
        recorders=RecordersView, clock=lambda: time.time_ns() // 1000,
    )
    incoming = [Incoming("rec.audio.v1", 0, n, e.kafka_key, data)
                for n, (e, data) in enumerate(zip(events, encoded, strict=True))]
    start = time.process_time()
    for i in range(0, len(incoming), 2000):
        processor.fold_batch(incoming[i:i + 2000])
        if i % SAVE_EVERY == SAVE_EVERY - 2000:
            processor.save()
    processor.save()
    rate("processor (decode+fold+state per 10,000+snapshots)", n,
         time.process_time() - start, ceiling)
    return ceiling


def bench_streams_worker(bootstrap: str, run_dir: Path) -> StreamsWorker:
    return StreamsWorker(bootstrap, f"bench-{uuid.uuid4().hex[:8]}", run_dir, "bench-worker",
                         {"CALLREC_STREAMS_LOG_LEVEL": "warning",
                          "CALLREC_STREAMS_MEDIA_TIMEOUT_S": "3600",
                          "CALLREC_STREAMS_RECORDER_LOST_AFTER_S": "3600"})


def spy(pid: int, out: str | None) -> subprocess.Popen[bytes] | None:
    """``--py-spy FILE``: py-spy (the dev extra) records the worker, 100 Hz, collapsed stacks."""
    if out is None:
        return None
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--rate",
         "100", "--format", "raw", "--output", out, "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def unspy(recorder: subprocess.Popen[bytes] | None) -> None:
    if recorder is not None:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        recorder.wait(60)


async def bench_worker(bootstrap: str, events: list[Event], run_dir: Path,
                       ceiling: Ceilings, spy_out: str | None = None) -> None:
    await publish(bootstrap, events)
    worker = bench_streams_worker(bootstrap, run_dir)
    pid = worker.start()
    recorder = None
    try:
        first_at = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            health = worker.health() or {}
            folded = int(health.get("events_folded", 0))  # type: ignore[call-overload]
            if folded and first_at is None:
                first_at, first_count, first_cpu = time.monotonic(), folded, cpu_seconds(pid)
                recorder = spy(pid, spy_out)
            if folded >= len(events):
                break
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - (first_at or time.monotonic())
        cpu = cpu_seconds(pid) - first_cpu
        n = len(events) - first_count
        print(f"worker + Kafka: {n:,} events in {elapsed:.1f} s = {n / elapsed:,.0f} events/s "
              f"wall ({load()})")
        ROW.append(f"wall {n / elapsed:,.0f} events/s over {elapsed:.1f} s")
        rate("worker + Kafka (per CPU-second of the worker)", n, cpu, ceiling)
    finally:
        unspy(recorder)
        worker.stop()


async def bench_paced(bootstrap: str, calls: int, seconds: float, run_dir: Path,
                      ceiling: Ceilings, spy_out: str | None = None) -> None:
    worker = bench_streams_worker(bootstrap, run_dir)
    pid = worker.start()
    recorder = None
    try:
        await asyncio.to_thread(worker.wait_assigned)
        recorder = spy(pid, spy_out)
        cpu_before, started = cpu_seconds(pid), time.monotonic()
        sent, publish_s = await pace(bootstrap, calls, seconds)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if int((worker.health() or {}).get("events_folded", 0)) >= sent:  # type: ignore[call-overload]
                break
            await asyncio.sleep(0.2)
        folded = int((worker.health() or {}).get("events_folded", 0))  # type: ignore[call-overload]
        wall, cpu = time.monotonic() - started, cpu_seconds(pid) - cpu_before
        print(f"worker + Kafka, paced: {calls} calls x 10 events/s for {seconds:.0f} s; published "
              f"{sent:,} in {publish_s:.1f} s ({sent / publish_s:,.0f}/s), folded {folded:,} "
              f"within {wall:.1f} s ({load()})")
        print(f"worker CPU {cpu:.1f} s over {wall:.1f} s = {cpu / wall:.2f} of a core while "
              f"folding {folded / wall:,.0f} events/s (= {cpu / wall / calls * 1000:.2f} cores "
              "per 1,000 calls)")
        rate("worker + Kafka, paced (per CPU-second of the worker)", folded, cpu, ceiling)
    finally:
        unspy(recorder)
        worker.stop()


def avro_long(value: int) -> bytes:
    n, out = (value << 1) ^ (value >> 63), bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def avro_string(text: str) -> bytes:
    return avro_long(len(text.encode())) + text.encode()


class ChunkWriter:
    """A leg's AudioChunks as ``codec.encode`` writes them, but without pydantic and fastavro:
    only event_id, event_time and chunk_seq change from one chunk to the next, and the paced
    publisher must keep a site's pace on a busy machine."""

    def __init__(self, template: AudioChunk) -> None:
        head, data = codec.header(AudioChunk), codec.encode(template)
        self.mid = (avro_string(template.producer_id) + avro_string(template.call_key)
                    + avro_long(list(Leg).index(template.leg)) + avro_string(template.leg_id))
        before_mid = len(head) + len(avro_string(str(template.event_id))) + len(
            avro_long(micros(template.event_time)))
        self.head, self.key = head, template.kafka_key
        self.tail = data[before_mid + len(self.mid) + len(avro_long(template.chunk_seq)):]
        assert self.chunk(template.chunk_seq, micros(template.event_time),
                          str(template.event_id)) == data

    def chunk(self, seq: int, at_us: int, event_id: str | None = None) -> bytes:
        return (self.head + avro_string(event_id or str(uuid.uuid4())) + avro_long(at_us)
                + self.mid + avro_long(seq) + self.tail)


async def pace(bootstrap: str, calls: int, seconds: float) -> tuple[int, float]:
    """Publish ``calls`` calls like recorders would, live for ``seconds``: both legs start, a
    chunk per leg every 200 ms (each call at its own phase), both end. Returns (events, s)."""
    now = time.time_ns() // 1000
    made = [Call(key=new_call_key("BenchPaced"), t0=now) for _ in range(calls)]
    audio = packets(10, now, 160)
    chunks = {(call.key, side): ChunkWriter(call.chunk(side, 0).model_copy(
        update={"packets": audio})) for call in made for side in Leg}
    publisher = EventPublisher(bootstrap, f"bench-paced-{uuid.uuid4().hex[:8]}")
    await publisher.start()
    acks: list[asyncio.Future[object]] = []
    steps = int(seconds * 5)
    started = time.monotonic()
    try:
        for step in range(steps + 2):
            for n, call in enumerate(made):
                due = started + (step + n / calls) * 0.2
                if due - time.monotonic() > 0.005:
                    await asyncio.sleep(due - time.monotonic())
                t = call.t0 + step * 200_000
                if 0 < step <= steps:
                    for side in Leg:
                        writer = chunks[call.key, side]
                        acks.append(await publisher.enqueue_encoded(
                            AUDIO.name, writer.key, writer.chunk(step - 1, t), "AudioChunk"))
                    continue
                events: list[Event] = (
                    [call.started(side) for side in Leg] if step == 0
                    else [call.ended(side, t - call.t0, chunks=steps) for side in Leg])
                acks += [await publisher.enqueue(event) for event in events]
        await asyncio.gather(*acks)
    finally:
        await publisher.stop()
    return len(acks), time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench_failover(bootstrap: str, run_dir: Path) -> None:
    app_id = f"bench-failover-{uuid.uuid4().hex[:8]}"
    env = {"CALLREC_STREAMS_LOG_LEVEL": "warning", "CALLREC_STREAMS_MEDIA_TIMEOUT_S": "3600"}
    pair = [StreamsWorker(bootstrap, app_id, run_dir, name, env) for name in ("a", "b")]
    for worker in pair:
        worker.start()
    try:
        while not covered(pair):  # noqa: ASYNC110 - polling another process's health file
            await asyncio.sleep(0.5)
        victim = pair[1]
        owned = set(victim.health()["assigned_partitions"])  # type: ignore[index,arg-type]
        recorder = f"rec-{uuid.uuid4().hex[:6]}"
        async with heartbeats(bootstrap, {recorder: "i1"}), Reader(bootstrap) as reader:
            victim.kill()
            killed = time.monotonic()
            probes = [Call(key=new_call_key("BenchFailover"), t0=time.time_ns() // 1000,
                           recorder=recorder, incarnation="i1") for _ in range(12)]
            await publish(bootstrap, [p.started(side) for p in probes for side in Leg])
            while True:
                await reader.poll(0.2)
                moved = [r for p in probes if (r := reader.latest(p.key)) is not None
                         and r.status == CallStatus.ACTIVE and r.legs
                         and partition_of(reader, p.key) in owned]
                if moved:
                    break
            print(f"failover after kill -9: {time.monotonic() - killed:.1f} s until the survivor "
                  f"published a call of the killed worker's partitions (group session "
                  f"timeout {FAST_RULES['CALLREC_STREAMS_SESSION_TIMEOUT_S']} s)")
    finally:
        for worker in pair:
            worker.stop()


def covered(pair: list[StreamsWorker]) -> bool:
    """Both workers up and all six partitions assigned between them."""
    owned = [set((w.health() or {}).get("assigned_partitions") or []) for w in pair]  # type: ignore[call-overload]
    return all(owned) and set().union(*owned) == set(range(6))


def partition_of(reader: Reader, key: str) -> int | None:
    from aiokafka.partitioner import DefaultPartitioner

    return int(DefaultPartitioner()(key.encode(), list(range(6)), list(range(6))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--bootstrap")
    parser.add_argument("--no-failover", action="store_true", help="skip the kill -9 part")
    parser.add_argument("--paced", type=float, metavar="SECONDS",
                        help="run the worker under a site's paced load (--calls x 10 events/s) "
                             "for SECONDS instead of catching up with a published backlog")
    parser.add_argument("--py-spy", metavar="FILE",
                        help="record the worker with py-spy (pip install -e '.[dev]') into FILE")
    args = parser.parse_args()
    events = workload(args.calls, args.chunks)
    print(f"workload: {args.calls} calls x 2 legs x {args.chunks} chunks = {len(events):,} events"
          f" ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {load()})")
    started_load = f"{os.getloadavg()[0]:.1f}"
    ceiling = bench_pure(events)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = KafkaBroker(libs=ensure_kafka_jars(cache_dir()), data_dir=run_dir / "kafka",
                             port=free_port(), controller_port=free_port())
        broker.start()
        bootstrap = broker.bootstrap
        asyncio.run(ensure_topics(bootstrap, 6))
    try:
        if args.paced:
            asyncio.run(bench_paced(bootstrap, args.calls, args.paced, run_dir, ceiling,
                                    args.py_spy))
        else:
            asyncio.run(bench_worker(bootstrap, workload(args.calls, args.chunks), run_dir,
                                     ceiling, args.py_spy))
        print_row(started_load)
        if not args.no_failover:
            asyncio.run(bench_failover(bootstrap, run_dir))
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(run_dir, ignore_errors=True)  # the broker's log: ~0.5 GB a run


if __name__ == "__main__":
    main()
