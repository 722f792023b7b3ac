"""Mixer benchmark, run by hand: `.venv/bin/python bench/mixer_speed.py [--calls 100]`.

1. Mixing speed per core by format: a two-leg call through the whole pipeline (plan, PyAV
   decode, render, PyAV encode), CPU time of this process, printed as x real time.
   Goals: WAV and FLAC >= 1000x, Opus >= 150x.
2. Call end -> RecordingArchived latency with N concurrent calls, against a real Kafka broker and
   a real S3 server started here on loopback, the mixer running as its own process
   (`python -m callrec.sinks`). All calls' audio is published while they are active, then they
   end (all at once, then staggered); latency is from the terminal CallRecord's send to the
   RecordingArchived's arrival. Goal: p99 < 2 s with 100 calls.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer

from callrec.avro import codec
from callrec.avro.events import CallRecord, CallStatus, Event, Leg, RecordingArchived
from callrec.avro.topics import RECORDINGS
from callrec.eventlog import EventPublisher
from callrec.infra.kafka import KafkaBroker, ensure_kafka_jars
from callrec.infra.procs import free_port
from callrec.infra.s3 import S3Server, ensure_versitygw
from callrec.infra.topics import ensure_topics
from callrec.sinks.encode import FORMATS
from callrec.sinks.manifests import generate_key
from callrec.sinks.recording import mix_call
from tests.sinks.factory import (
    call_record,
    chunked,
    leg_summary,
    rtp_stream,
    simple_call,
)

CACHE = Path(os.environ.get("CALLREC_CACHE_DIR", Path.home() / ".cache" / "callrec"))


def speed(seconds: int) -> None:
    packets = seconds * 50
    near, far, record = simple_call("Bench:1", packets=packets)
    wide_near = chunked(rtp_stream(packets, payload_type=9), "Bench:2", Leg.NEAR_END, "n",
                        codec="G722", payload_type=9)
    wide_far = chunked(rtp_stream(packets, payload_type=9, ssrc=9, seed=4), "Bench:2",
                       Leg.FAR_END, "f", codec="G722", payload_type=9)
    wide = call_record("Bench:2", [leg_summary(wide_near), leg_summary(wide_far)])
    print(f"mixing speed, one core, a {seconds} s two-leg call, x real time (CPU time):")
    for label, call, chunks in (("G.711 8 kHz", record, near + far),
                                ("G.722 16 kHz", wide, wide_near + wide_far)):
        for channels in (2, 1):
            row = []
            for name, fmt in FORMATS.items():
                mix_call(call, chunks, fmt, channels, io.BytesIO())  # warm up
                runs = 3
                start = time.process_time()
                for _ in range(runs):
                    mix_call(call, chunks, fmt, channels, io.BytesIO())
                cpu = (time.process_time() - start) / runs
                row.append(f"{name} {seconds / cpu:7.0f}x")
            kind = "stereo" if channels == 2 else "mono  "
            print(f"  {label:<13} {kind}  " + "   ".join(row))


def start_mixer(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "callrec.sinks"], env=env,
                            stderr=log.open("wb"))


async def latency(calls: int, seconds: int, workdir: Path) -> None:
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
        publisher = EventPublisher(broker.bootstrap, "bench")
        await publisher.start()
        for label, stagger in (("all end at once", 0.0), ("ends spread over 10 s", 10.0)):
            lat = await _round(publisher, broker.bootstrap, calls, seconds, stagger, label)
            q = statistics.quantiles(lat, n=100)
            print(f"  {label:<22} p50 {statistics.median(lat) * 1000:6.0f} ms   "
                  f"p99 {q[98] * 1000:6.0f} ms   max {max(lat) * 1000:6.0f} ms")
        await publisher.stop()
    finally:
        if mixer is not None:
            mixer.terminate()
            mixer.wait(60)
        s3.stop()
        broker.stop()


async def _round(publisher: EventPublisher, bootstrap: str, calls: int, seconds: int,
                 stagger: float, label: str) -> list[float]:
    cluster = f"B{secrets.token_hex(4)}"
    records: list[CallRecord] = []
    for n in range(calls):
        near, far, done = simple_call(f"{cluster}:{n}", packets=seconds * 50)
        active = done.model_copy(update={"status": CallStatus.ACTIVE, "ended_at": None,
                                         "version": 1})
        futures = [await publisher.enqueue(e) for e in (active, *near, *far)]
        await asyncio.gather(*futures)
        records.append(done)
    reader = AIOKafkaConsumer(RECORDINGS.name, bootstrap_servers=bootstrap,
                              auto_offset_reset="latest", group_id=f"bench-{cluster}")
    await reader.start()
    await asyncio.sleep(3)  # let the reader join and the mixer take in the audio
    sent: dict[str, float] = {}

    async def end_calls() -> None:
        for record in records:
            sent[record.call_key] = time.monotonic()
            await publisher.publish(record)
            if stagger:
                await asyncio.sleep(stagger / calls)

    ending = asyncio.create_task(end_calls())
    got: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while len(got) < calls and time.monotonic() < deadline:
        for batch in (await reader.getmany(timeout_ms=200)).values():
            for rec in batch:
                event: Event = codec.decode(rec.value or b"")
                if isinstance(event, RecordingArchived) and event.call_key.startswith(cluster):
                    got.setdefault(event.call_key, time.monotonic())
    await ending
    await reader.stop()
    if len(got) < calls:
        print(f"  {label}: only {len(got)} of {calls} archived within 120 s")
    return [got[k] - sent[k] for k in got]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="call length for the speed test")
    parser.add_argument("--calls", type=int, default=100, help="concurrent calls for latency")
    parser.add_argument("--call-seconds", type=int, default=30, help="length of those calls")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    speed(args.seconds)
    if not args.skip_latency:
        print(f"call end -> RecordingArchived, {args.calls} concurrent {args.call_seconds} s "
              "calls, WAV, mixer in its own process:")
        with tempfile.TemporaryDirectory(prefix="mixer-bench-") as tmp:
            asyncio.run(latency(args.calls, args.call_seconds, Path(tmp)))


if __name__ == "__main__":
    main()
