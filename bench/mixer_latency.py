"""Call end -> RecordingArchived latency, run by hand: `.venv/bin/python bench/mixer_latency.py`.

``--calls`` calls (100) of ``--call-seconds`` (30 s) go through a real Kafka broker and a real
S3 server (versitygw) started here on loopback, the mixer running as its own process
(`python -m callrec.sinks`, its defaults: WAV stereo, object lock with per-version retention).
All calls' audio is published while they are active, then they end: all at the same instant,
then spread over 10 s. Latency is from the terminal CallRecord's send to the RecordingArchived's
arrival here. Goal (issue 14): p99 < 2 s with 100 calls ending at the same instant.

Ceilings measured in the same run, after the mixer is stopped, on the same calls:
- PyAV encoding each call's PCM alone, and the mixer's whole mix (``mix_call``), CPU s per call;
- all the calls decoded from their Kafka values (as the worker does at intake) and mixed at
  once on as many threads as cores (how the worker mixes, under the GIL), and on as many
  processes;
- the S3 put of the same objects alone (the mixer's store code, all at once as the worker
  issues them), wall s for all;
- the floor for "all end at once": the longer of every call's mix CPU spread over the machine's
  cores and all the puts (they can overlap): p99 cannot beat it on this machine, at this load.
  Printed as floor / p99 (1.0 = at the floor).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

# The repo (for tests.sinks.factory) goes after any tree put first on PYTHONPATH, so an older
# tree's callrec can be measured with this script.
sys.path.insert(1 + len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
                str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mixer_profile import summarise_mixer
from mixer_speed import bare_encode, load_line

from callrec.avro import codec
from callrec.avro.events import AudioChunk, CallRecord, CallStatus, Event, RecordingArchived
from callrec.avro.topics import AUDIO, RECORDINGS
from callrec.eventlog import EventPublisher, reader
from callrec.infra.kafka import KafkaBroker, ensure_kafka_jars
from callrec.infra.procs import free_port
from callrec.infra.s3 import S3Server, ensure_versitygw
from callrec.infra.topics import ensure_topics
from callrec.sinks.encode import FORMATS
from callrec.sinks.manifests import generate_key
from callrec.sinks.naming import object_key, object_metadata
from callrec.sinks.recording import MixedRecording, mix_call, render_call
from callrec.sinks.store import LockPolicy, RecordingStore, connect
from tests.sinks.factory import simple_call

CACHE = Path(os.environ.get("CALLREC_CACHE_DIR", Path.home() / ".cache" / "callrec"))
WAV = FORMATS["wav"]
CHANNELS = 2
Call = tuple[CallRecord, list[AudioChunk]]


def quantiles(lat: list[float]) -> str:
    p99 = statistics.quantiles(lat, n=100)[98] if len(lat) > 1 else lat[0]
    return (f"p50 {statistics.median(lat) * 1000:6.0f} ms   p99 {p99 * 1000:6.0f} ms   "
            f"max {max(lat) * 1000:6.0f} ms")


def start_mixer(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "callrec.sinks"], env=env,
                            stderr=log.open("wb"))


async def latency(calls: int, seconds: int, workdir: Path, profile: Path | None) -> None:
    broker = KafkaBroker(libs=ensure_kafka_jars(CACHE), data_dir=workdir / "kafka",
                         port=free_port(), controller_port=free_port())
    s3 = S3Server(binary=ensure_versitygw(CACHE), data_dir=workdir / "nas",
                  state_dir=workdir / "s3", access_key="bench-" + secrets.token_hex(6),
                  secret_key=secrets.token_hex(16), port=free_port())
    broker.start()
    s3.start()
    mixer = None
    try:
        await ensure_topics(broker.bootstrap, 6)
        generate_key(workdir / "manifest.pem")
        env = {
            **os.environ,
            "CALLREC_KAFKA_BOOTSTRAP": broker.bootstrap, "CALLREC_S3_ENDPOINT": s3.endpoint,
            "CALLREC_S3_ACCESS_KEY": s3.access_key, "CALLREC_S3_SECRET_KEY": s3.secret_key,
            "CALLREC_MIXER_SPOOL_DIR": str(workdir / "spool"),
            "CALLREC_MIXER_HEALTH_FILE": str(workdir / "health.json"),
            "CALLREC_MIXER_MANIFEST_KEY": str(workdir / "manifest.pem"),
        }
        mixer = start_mixer(env, workdir / "mixer.log")
        await running(workdir / "health.json")  # its start-up is not counted as intake
        publisher = EventPublisher(broker.bootstrap, "bench")
        await publisher.start()
        at_once: list[Call] = []
        for label, stagger in (("all end at once", 0.0), ("ends spread over 10 s", 10.0)):
            print(f"  before: {load_line()}", flush=True)
            cpu = process_cpu(mixer.pid)
            spy_dir = profile if not stagger else None
            lat, made, ended = await _round(publisher, broker.bootstrap, calls, seconds, stagger,
                                              mixer.pid, spy_dir)
            cpu = process_cpu(mixer.pid) - cpu
            at_once = at_once or made
            print(f"  {label:<22} {quantiles(lat)}   ({len(lat)} of {calls} archived)")
            print(f"    the mixer process used {cpu:.1f} CPU s in this round "
                  f"({cpu / calls * 1000:.0f} ms per call, taking in the audio included); "
                  f"from the first end to the last archive it had "
                  f"{ended[1] / ended[0]:.2f} of a core" if ended[0] else "")
            print(f"  after:  {load_line()}", flush=True)
            if not stagger:
                p99_at_once = statistics.quantiles(lat, n=100)[98]
        await publisher.stop()
        mixer.terminate()
        mixer.wait(60)
        mixer = None
        await ceilings(at_once, s3, p99_at_once)
        await intake_ceilings(broker.bootstrap, 2 * calls)
    finally:
        if mixer is not None:
            mixer.terminate()
            mixer.wait(60)
        s3.stop()
        broker.stop()


async def running(health: Path) -> None:
    """Wait for the mixer's health file to say it runs (it has its partitions)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await asyncio.to_thread(_says_running, health):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the mixer did not start in 60 s")


def _says_running(health: Path) -> bool:
    return health.exists() and '"running"' in health.read_text()


def spy_on(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the mixer process (all its threads) until ``stop_spy``: the audio's
    intake, the mixes and the puts of one round."""
    spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen([str(spy), "record", "-p", str(pid), "-r", "250", "-f", "raw",
                             "--threads", "-o", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def stop_spy(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)
    spy.wait(60)


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _round(publisher: EventPublisher, bootstrap: str, calls: int, seconds: int,
                 stagger: float, mixer_pid: int, spy_dir: Path | None) -> tuple[
                     list[float], list[Call], tuple[float, float]]:
    """Latencies, the calls, and (wall s, mixer CPU s) from the first end to the last archive.
    With ``spy_dir``, py-spy profiles of the mixer taking in the audio, then draining the calls."""
    cluster = f"B{secrets.token_hex(4)}"
    made: list[Call] = []
    spy = spy_on(mixer_pid, spy_dir / "intake.txt") if spy_dir else None
    cpu_at_start, started = process_cpu(mixer_pid), time.monotonic()
    for n in range(calls):
        near, far, done = simple_call(f"{cluster}:{n}", packets=seconds * 50)
        active = done.model_copy(update={"status": CallStatus.ACTIVE, "ended_at": None,
                                         "version": 1})
        futures = [await publisher.enqueue(e) for e in (active, *near, *far)]
        await asyncio.gather(*futures)
        made.append((done, near + far))
    reader = AIOKafkaConsumer(RECORDINGS.name, bootstrap_servers=bootstrap,
                              auto_offset_reset="latest", group_id=f"bench-{cluster}")
    await reader.start()
    await asyncio.sleep(2)  # let the reader join and the mixer take in the audio
    cpu_before_last_s = process_cpu(mixer_pid)
    await asyncio.sleep(1)
    sent: dict[str, float] = {}

    async def end_calls() -> None:
        for record, _ in made:
            sent[record.call_key] = time.monotonic()
            await publisher.publish(record)
            if stagger:
                await asyncio.sleep(stagger / calls)

    cpu_at_end = process_cpu(mixer_pid)
    print(f"    intake: the mixer used {cpu_at_end - cpu_at_start:.1f} CPU s in the "
          f"{time.monotonic() - started:.1f} s the audio was published (and 3 s after), "
          f"{cpu_at_end - cpu_before_last_s:.2f} s of it in the last second before the calls "
          "ended (near 0: it had taken in all the audio)")
    if spy is not None:
        stop_spy(spy)
        summarise_mixer(spy_dir / "intake.txt", "taking in the audio")
        spy = spy_on(mixer_pid, spy_dir / "drain.txt")
    first_end = time.monotonic()
    ending = asyncio.create_task(end_calls())
    got: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while len(got) < calls and time.monotonic() < deadline:
        for batch in (await reader.getmany(timeout_ms=200)).values():
            for rec in batch:
                event: Event = codec.decode(rec.value or b"")
                if isinstance(event, RecordingArchived) and event.call_key.startswith(cluster):
                    got.setdefault(event.call_key, time.monotonic())
    busy = (max(got.values(), default=first_end) - first_end,
            process_cpu(mixer_pid) - cpu_at_end)
    if spy is not None and spy_dir is not None:
        stop_spy(spy)
        summarise_mixer(spy_dir / "drain.txt", "from the first end to the last archive")
    await ending
    await reader.stop()
    return [got[k] - sent[k] for k in got], made, busy


def _mix_encoded(record: bytes, chunks: list[bytes]) -> int:
    """One call from its Kafka values (as the spool holds them): decode, then mix."""
    call = codec.decode(record)
    decoded = [codec.decode(c) for c in chunks]
    assert isinstance(call, CallRecord)
    audio = [c for c in decoded if isinstance(c, AudioChunk)]
    return mix_call(call, audio, WAV, CHANNELS, io.BytesIO()).size_bytes


async def ceilings(calls: list[Call], s3: S3Server, p99: float) -> None:
    """The same calls' bare encode, whole mix and S3 put, each alone (mixer stopped)."""
    encode_cpu = mix_cpu = 0.0
    files: list[tuple[CallRecord, MixedRecording, io.BytesIO]] = []
    for record, chunks in calls:
        rendered, _ = render_call(record, chunks, CHANNELS)
        start = time.process_time()
        bare_encode(rendered.samples, rendered.sample_rate, WAV)
        encode_cpu += time.process_time() - start
        out = io.BytesIO()
        start = time.process_time()
        mixed = mix_call(record, chunks, WAV, CHANNELS, out)
        mix_cpu += time.process_time() - start
        files.append((record, mixed, out))
    n = len(calls)
    cores = os.cpu_count() or 1
    print(f"  ceilings, same {n} calls, WAV stereo ({load_line()}):")
    print(f"    PyAV encode of the PCM alone  {encode_cpu / n * 1000:6.1f} ms CPU per call")
    print(f"    the mixer's whole mix_call    {mix_cpu / n * 1000:6.1f} ms CPU per call")
    encoded = [(codec.encode(r), [codec.encode(c) for c in cs]) for r, cs in calls]
    for kind, pool in (("threads", ThreadPoolExecutor), ("processes", ProcessPoolExecutor)):
        with pool(cores) as workers:
            start = time.monotonic()
            list(workers.map(_mix_encoded, *zip(*encoded, strict=True)))
            wall = time.monotonic() - start
            print(f"    all {n} decode+mix on {cores} {kind:<9} {wall:5.2f} s wall "
                  f"(mix CPU / {cores} cores: {mix_cpu / cores:.2f} s)")
    store = RecordingStore(connect(s3.endpoint, s3.access_key, s3.secret_key, False), "ceiling")
    store.ensure_bucket(LockPolicy())
    retain = datetime.now(UTC) + timedelta(days=1)

    async def put(record: CallRecord, mixed: MixedRecording, out: io.BytesIO) -> float:
        start = time.monotonic()
        await asyncio.to_thread(store.put, object_key(record, WAV.extension), out,
                                WAV.content_type, object_metadata(record, mixed), retain)
        return time.monotonic() - start

    start = time.monotonic()
    puts = await asyncio.gather(*(put(*f) for f in files))
    put_all = time.monotonic() - start
    print(f"    S3 put alone, all {n} at once {put_all * 1000:6.0f} ms wall for all   "
          f"each: {quantiles(list(puts))}")
    floor = max(mix_cpu / cores, put_all)
    print(f"    floor for all ending at once (the longer of mix CPU / {cores} cores and the puts): "
          f"{floor * 1000:.0f} ms;  floor / p99 = {floor / p99:.2f}")


async def intake_ceilings(bootstrap: str, calls: int) -> None:
    """Both rounds' audio read back from Kafka (a backlog: the fullest fetches) by a bare
    consumer, then each value also decoded by the contract, then read as the worker reads it."""
    tps = [TopicPartition(AUDIO.name, p) for p in range(6)]
    print(f"  ceilings of taking in the audio, {calls} calls read back from Kafka "
          f"({load_line()}):")
    readers: list[tuple[str, Callable[[list[bytes]], object] | None]] = [
        ("a bare consumer", None),
        ("+ the contract decode", lambda values: [codec.decode(v) for v in values])]
    try:
        from callrec.sinks.chunk_wire import read_chunks
        readers.append(("+ chunk_wire.read_chunks", read_chunks))
    except ImportError:  # an older tree
        pass
    for label, read in readers:
        async with reader(bootstrap, "bench-intake") as consumer:
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            start = time.process_time()
            records = 0
            pending = {tp for tp in tps if ends[tp]}
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=1000)
                for batch in batches.values():
                    records += len(batch)
                    if read is not None:
                        read([r.value or b"" for r in batch])
                pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
            cpu = time.process_time() - start
        print(f"    {label:<26} {cpu / calls * 1000:5.1f} ms CPU per call "
              f"({cpu / max(1, records) * 1e6:4.1f} us per record)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="calls ending together")
    parser.add_argument("--call-seconds", type=int, default=30, help="length of those calls")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy the mixer process through the all-at-once round, by stage "
                             "(its raw stacks kept in DIR: intake.txt, drain.txt)")
    args = parser.parse_args()
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "|", load_line())
    print(f"call end -> RecordingArchived, {args.calls} concurrent {args.call_seconds} s calls, "
          "WAV stereo, mixer in its own process, Kafka and S3 on this machine:")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mixer-bench-") as tmp:
        asyncio.run(latency(args.calls, args.call_seconds, Path(tmp), args.profile))


if __name__ == "__main__":
    main()
