"""How many concurrent CUCM calls one recorder process records with zero lost chunks.

Run by hand: ``.venv/bin/python bench/recorder_load.py --calls 500 --seconds 20``. It starts a
Kafka broker (or uses ``--bootstrap``). First the ceiling: a bare asyncio UDP receiver on as many
sockets as the recorder will have, fed the same packet rate (``rtp_ceiling.py``). Then one
recorder process: ``calls`` two-leg calls with delayed-offer INVITEs (our own minimal UAC), and a
separate sender process streaming G.711 RTP (20 ms, 160-byte payloads) to every leg. It prints
the machine's load, the CPU per packet of both and their ratio, the recorder's calls per core and
CPU-seconds per call-minute, p50/p99 chunk latency (chunk closed -> visible to a Kafka consumer),
and whether every packet sent arrived in a contiguous chunk sequence. Kafka's side has its own
ceiling in the same run (``outbox_ceiling.py``): a bare aiokafka producer with the recorder's
settings sending ``--kafka-records`` chunk-sized records, then the outbox draining a spool of the
same records, as a ratio to it; during the recorder's window it prints the records per second
the recorder got acknowledged against the chunks it recorded.

``--pin`` runs the recorder as it is deployed, with a core of its own: once it is up, every
thread of it is pinned to the first CPU this bench may use, and the bench's other processes (the
RTP sender, the Kafka broker it started, its own consumer) to the rest. Only this bench's
processes are pinned; other work on the machine still runs on either core, which the recorder's
CPU-wait share (printed per thread) shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_uac import Uac, open_calls
from outbox_ceiling import kafka_ceiling
from rtp_ceiling import (
    CpuWindow,
    bare_ceiling,
    machine_load,
    measure,
    read_audio_chunks,
    start_sending,
    udp_drops,
    with_broker,
)

from callrec.avro import codec
from callrec.avro.events import AudioChunk, LegEnded
from callrec.infra.procs import ManagedProcess, free_port


async def tail_sample(
    bootstrap: str,
    stop: asyncio.Event,
    latencies: list[tuple[float, float]],
    ended: dict[str, LegEnded],
    start: dict[TopicPartition, int],
) -> None:
    """During the run: every lifecycle event, and every 20th audio chunk for the latency, as
    (closed -> consumed, closed -> handed to the producer: the record's create time)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=20)
    await consumer.start()
    tps = [TopicPartition(t, p) for t in ("rec.audio.v1", "rec.lifecycle.v1") for p in range(6)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        start[tp] = await consumer.position(tp)
    n = 0
    try:
        while not stop.is_set():
            for tp, records in (await consumer.getmany(timeout_ms=100)).items():
                now = time.time()
                for r in records:
                    n += 1
                    if tp.topic == "rec.audio.v1" and n % 20:
                        continue
                    event = codec.decode(r.value or b"")
                    if isinstance(event, AudioChunk) and event.call_key.startswith("BENCH:"):
                        closed = event.event_time.timestamp()
                        latencies.append((now - closed, r.timestamp / 1000 - closed))
                    elif isinstance(event, LegEnded) and event.call_key.startswith("BENCH:"):
                        ended[event.leg_id] = event
    finally:
        await consumer.stop()


def udp_receive_buffer_errors() -> int:
    """The host's count of UDP datagrams dropped for a full receive buffer (/proc/net/snmp)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    names, values = [line for line in lines if line[0] == "Udp:"][:2]
    return int(values[names.index("RcvbufErrors")])


def start_recorder(bootstrap: str, work: Path, legs: int, sip_port: int,
                   tree: str | None) -> subprocess.Popen[bytes]:  # fmt: skip
    """The recorder as the stack runs it, with RTP ports 40000 and up; its code from the clone
    ``tree`` if given."""
    first = [str(installed_as_callrec(Path(tree), work / "tree"))] if tree else []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*first, os.environ.get("PYTHONPATH", "")]),
        "CALLREC_RECORDER_ID": "bench",
        "CALLREC_RECORDER_KAFKA_BOOTSTRAP": bootstrap,
        "CALLREC_RECORDER_SIP_PORT": str(sip_port),
        "CALLREC_RECORDER_RTP_PORTS": f"40000-{40000 + legs + 100}",
        "CALLREC_RECORDER_MAX_LEGS": str(legs + 10),
        "CALLREC_RECORDER_DATA_DIR": str(work / "recorder"),
        "CALLREC_RECORDER_DRAIN_TIMEOUT_S": "5",
        # The bench sets up every call at once from one address: no INVITE rate limit to hit.
        "CALLREC_RECORDER_SIP_INVITE_RATE_PER_PEER": "100000",
        "CALLREC_RECORDER_SIP_INVITE_BURST_PER_PEER": str(legs * 2),
    }
    # Not from the clone's directory: ``-m`` puts the working directory first on sys.path, and
    # the clone's callrec/ would shadow ``tree`` (the old tree then ran this tree's producers).
    where = subprocess.run(
        [sys.executable, "-c", "import callrec.producers.recorder as r; print(r.__file__)"],
        env=env, cwd=work, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    print(f"recorder code: {where}", flush=True)
    log = (work / "recorder.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "callrec.producers"],
        env=env,
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def installed_as_callrec(clone: Path, into: Path) -> Path:
    """A directory that imports as the clone's ``callrec`` the way pyproject.toml installs it
    (callrec/ plus producers/, avro/, ... as its subpackages), built of symlinks: on
    PYTHONPATH alone a clone gives its callrec/ but not its producers/, which the editable
    install maps to this clone's."""
    package = into / "callrec"
    package.mkdir(parents=True)
    for path in (clone / "callrec").iterdir():
        (package / path.name).symlink_to(path)
    for sub in ("avro", "producers", "streams", "sinks", "infra", "emulator", "exporter", "api"):
        if (clone / sub).is_dir():
            (package / sub).symlink_to(clone / sub)
    return into


async def bench(args: argparse.Namespace, bootstrap: str, work: Path) -> None:
    legs = args.calls * 2
    print(machine_load(), flush=True)
    bare = await bare_ceiling(legs, args.bare_seconds)
    print(f"bare receiver: {bare.cores:.3f} cores at {bare.packets_per_s:,.0f} packets/s = "
          f"{bare.us_per_packet:.2f} µs/packet", flush=True)  # fmt: skip
    polled = await bare_ceiling(legs, args.bare_seconds, polled=True)
    print(f"bare receiver polled as the recorder reads (RtpPoller): {polled.cores:.3f} cores at "
          f"{polled.packets_per_s:,.0f} packets/s = {polled.us_per_packet:.2f} µs/packet",
          flush=True)  # fmt: skip
    bare_kafka, _ = await kafka_ceiling(bootstrap, args.calls, args.kafka_records or legs * 50)
    sip_port = free_port()
    recorder = start_recorder(bootstrap, work, legs, sip_port, args.recorder_tree)
    stop_tail = asyncio.Event()
    latencies: list[tuple[float, float]] = []
    ended: dict[str, LegEnded] = {}
    start: dict[TopicPartition, int] = {}
    tail = asyncio.create_task(tail_sample(bootstrap, stop_tail, latencies, ended, start))
    rtp_ports = range(40000, 40000 + legs + 101)
    backlog = 0
    published: list[tuple[float, int]] = []  # (when, events Kafka acknowledged) each second
    threads: list[tuple[float, dict[int, tuple[float, float]]]] = []  # (when, by thread id)
    thread_names: dict[int, str] = {}

    def watch_backlog() -> None:
        nonlocal backlog
        status = json.loads((work / "recorder" / "status.json").read_text())
        backlog = max(backlog, status["spool_backlog_events"])
        published.append((time.monotonic(), status["published_events"]))
        threads.append((time.monotonic(), thread_cpu_seconds(recorder.pid)))
        thread_names.update({tid: name for name, tid in status.get("threads", {}).items()})

    try:
        await asyncio.sleep(3)
        if args.pin:
            pin_recorder_apart(recorder.pid, work)
        uac = Uac(sip_port)
        opened = open_calls(uac, args.calls, free_port())
        print(f"{args.calls} calls ({legs} legs) set up", flush=True)
        rcvbuf_errors = udp_receive_buffer_errors()
        sender = start_sending([o[4] for o in opened])
        await asyncio.sleep(3)  # warm up
        lat0 = len(latencies)
        rec = await measure(recorder.pid, sender, legs, args.seconds, watch_backlog)
        window = latencies[lat0:]
        sender.stop()
        await asyncio.sleep(0.5)
        drops = udp_drops(rtp_ports)  # before the BYEs close the sockets that count them
        rcvbuf_errors = udp_receive_buffer_errors() - rcvbuf_errors
        for call_id, leg, refci, to_tag, _ in opened:
            uac.close_leg(call_id, leg, refci, to_tag)
        deadline = time.monotonic() + 120
        while len(ended) < legs and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        spooled = await until_sent(work / "recorder" / "status.json", 300)
    finally:
        stop_tail.set()
        await tail
        os.kill(recorder.pid, signal.SIGTERM)
        recorder.wait(30)
    chunks = await read_audio_chunks(bootstrap, start)
    print(f"kernel drops on RTP sockets: {drops}, host-wide UDP receive-buffer drops: "
          f"{rcvbuf_errors}; largest recorder backlog (spooled, not yet acknowledged by Kafka): "
          f"{backlog} events")  # fmt: skip
    if spooled:
        print(f"STILL SPOOLED: {spooled} events were not yet acknowledged by Kafka 300 s after "
              "the BYEs; they stay in the stopped recorder's spool (sent at its next start), so "
              "the chunks below count them as lost")  # fmt: skip
    if report(args.calls, bare, polled, rec, sender.ticks, chunks, ended, window):
        kept = Path(tempfile.mkdtemp(prefix="recorder-load-loss-"))
        shutil.copytree(work / "recorder", kept / "recorder")
        shutil.copy(work / "recorder.log", kept)
        print(f"LOSS: the recorder's spool, status and log are kept in {kept}")
    if len(threads) > 1:
        (t0, cpu0), (t1, cpu1) = threads[0], threads[-1]
        shares = sorted(
            ((run - cpu0.get(tid, (0.0, 0.0))[0]) / (t1 - t0),
             (wait - cpu0.get(tid, (0.0, 0.0))[1]) / (t1 - t0), tid)
            for tid, (run, wait) in cpu1.items()
        )  # fmt: skip
        print("recorder threads (cores running / waiting runnable for a CPU): " + ", ".join(
            f"{thread_names.get(tid, tid)} {run:.3f} / {wait:.3f}"
            for run, wait, tid in reversed(shares) if run >= 0.005))  # fmt: skip
        starved = max(wait for _, wait, _ in shares)
        if starved > 0.1:
            print(f"CPU-STARVED: a recorder thread waited runnable for a CPU {starved:.0%} of the "
                  "window (other work on the machine); its reading lags by that, and so does the "
                  "latency")  # fmt: skip
    if len(published) > 1:
        (t0, n0), (t1, n1) = published[0], published[-1]
        rate = (n1 - n0) / (t1 - t0)
        print(f"Kafka acknowledged {rate:,.0f} recorder events/s in the window (chunks "
              f"recorded: {rec.packets_per_s / 10:,.0f}/s) = {rate / bare_kafka.per_s:.2f} of "
              f"the bare producer's rate")  # fmt: skip
    if drops:
        print("NOT KEEPING UP: the kernel dropped RTP the recorder did not read in time; a process "
              "that lags reads more per wake-up, so its CPU per packet reads low")  # fmt: skip
    if backlog > legs * 10:  # more than 2 s of chunks waiting for Kafka
        print("KAFKA NOT KEEPING UP: the spool backlog grew; the recorder sent Kafka less than it "
              "recorded, so its CPU per packet reads low and latency is the backlog's")  # fmt: skip
    print(machine_load())


def pin_recorder_apart(recorder_pid: int, work: Path) -> None:
    """The recorder's threads onto one CPU, this bench (and the sender it forks later) and its
    broker onto the others: threads started later inherit their creator's CPUs."""
    first, *rest = sorted(os.sched_getaffinity(0))
    if not rest:
        raise SystemExit("--pin needs two CPUs")
    others = [os.getpid()]
    broker = ManagedProcess("kafka", work / "kafka").pid()  # None with --bootstrap
    if broker is not None:
        others.append(broker)
    pin_threads(recorder_pid, {first})
    for pid in others:
        pin_threads(pid, set(rest))
    where = "broker" if broker else "no broker (--bootstrap)"
    print(f"pinned: recorder on CPU {first}; sender, consumer, {where} on CPU {rest}", flush=True)


def pin_threads(pid: int, cpus: set[int]) -> None:
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except ProcessLookupError:
            continue  # ended meanwhile


def thread_cpu_seconds(pid: int) -> dict[int, tuple[float, float]]:
    """Seconds each thread of ``pid`` has run, and waited runnable for a CPU (taken by other
    processes: the machine's load, not the GIL, for which a thread sleeps), by thread id."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            run_ns, wait_ns = (task / "schedstat").read_text().split()[:2]
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
        times[int(task.name)] = (int(run_ns) / 1e9, int(wait_ns) / 1e9)
    return times


def report(calls: int, bare: CpuWindow, polled: CpuWindow, rec: CpuWindow, per_leg_sent: int,
           chunks: dict[str, list[AudioChunk]], ended: dict[str, LegEnded],
           sampled: list[tuple[float, float]]) -> bool:  # fmt: skip
    """The figures the goal names: CPU per packet against the ceiling, calls per core, loss, p99;
    whether a chunk or a packet is missing from Kafka."""
    lost_chunks = duplicated_chunks = missing_packets = 0
    for leg_id, end in ended.items():
        seqs = [c.chunk_seq for c in chunks.get(leg_id, [])]
        lost_chunks += end.chunk_count - len(set(seqs))
        duplicated_chunks += len(seqs) - len(set(seqs))
        missing_packets += per_leg_sent - sum(len(c.packets) for c in chunks.get(leg_id, []))
    window = sorted(total for total, _ in sampled)
    recorder_side = sorted(part for _, part in sampled)
    pct = lambda q, xs=window: xs[min(len(xs) - 1, int(q * len(xs)))] * 1000  # noqa: E731
    print(f"legs ended: {len(ended)}/{calls * 2}; packets per leg sent: {per_leg_sent}")
    print(f"chunks lost: {lost_chunks}, duplicated: {duplicated_chunks}; "
          f"packets missing: {missing_packets}")  # fmt: skip
    print(f"recorder: {rec.cores:.3f} cores at {rec.packets_per_s:,.0f} packets/s = "
          f"{rec.us_per_packet:.2f} µs/packet; CPU-seconds per call-minute: "
          f"{rec.cores * 60 / calls:.3f}")  # fmt: skip
    print(f"recorder / bare receiver CPU per packet: {rec.us_per_packet / bare.us_per_packet:.2f}x"
          f" (/ the polled bare receiver: {rec.us_per_packet / polled.us_per_packet:.2f}x)")
    # A G.711 call at 20 ms is two legs of 50 packets/s: calls per core from the packets received
    # (a sender starved by other work sends fewer than the calls set up).
    per_core = lambda w: 1e6 / w.us_per_packet / 100  # noqa: E731
    print(f"calls per core at this load: {per_core(rec):,.0f} (bare receiver: "
          f"{per_core(bare):,.0f}, polled: {per_core(polled):,.0f}); the sender reached "
          f"{rec.packets_per_s / (calls * 100):.0%} of {calls * 100:,} packets/s")  # fmt: skip
    if window:
        print(f"chunk latency (closed -> consumed) p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms "
              f"({len(window)} chunks sampled); of it closed -> handed to Kafka's producer p50 "
              f"{pct(0.5, recorder_side):.1f} ms, p99 {pct(0.99, recorder_side):.1f} ms"
              )  # fmt: skip
    else:
        print("chunk latency: no chunk sampled in the window")
    return bool(lost_chunks or missing_packets or len(ended) < calls * 2)


async def until_sent(status_file: Path, within_s: float) -> int:
    """Events the recorder has spooled and Kafka not yet acknowledged, once none are left or
    ``within_s`` has passed: a recorder starved of CPU ends its legs long before its backlog is
    sent, and chunks still in the spool when it stops are not in Kafka, yet not lost."""
    deadline = time.monotonic() + within_s
    while True:
        left = spool_backlog(status_file)
        if left == 0 or time.monotonic() >= deadline:
            return left
        await asyncio.sleep(0.5)


def spool_backlog(status_file: Path) -> int:
    return int(json.loads(status_file.read_text())["spool_backlog_events"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=250)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--bare-seconds", type=float, default=10, help="the ceiling's window")
    parser.add_argument("--kafka-records", type=int, default=0,
                        help="records of the Kafka ceiling (default: 10 s of the calls' chunks)")
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting one")
    parser.add_argument("--recorder-tree", help="run the recorder from this clone (e.g. a `git "
                        "worktree add` of an older commit; the ceilings run this one's)")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the recorder on a CPU of its own, the sender, broker and consumer on the other(s)",
    )
    args = parser.parse_args()
    with_broker(args.bootstrap, "recorder-bench-",
                lambda bootstrap, work: bench(args, bootstrap, work))  # fmt: skip


if __name__ == "__main__":
    main()
