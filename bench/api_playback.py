"""Playback benchmark, run by hand: `.venv/bin/python bench/api_playback.py [--streams 100]`.

A Kafka broker, the S3 server and one REST replica started here on free ports; a 60 s stereo
WAV archived. Time to first byte of ranged GETs (each access event is acknowledged by Kafka
before that byte), p50/p99, goal p99 < 100 ms with 100 concurrent streams:
1. burst: ``--rounds`` rounds of ``--streams`` requests fired at the same instant (the worst
   case: every stream seeks at once), and the replica's CPU per request;
   ceiling: the same ranged GETs straight from the S3 server at the same concurrency, with no
   audit, in the same run (and the S3 server's own CPU per request);
   floor: the replica's CPU per request of ``GET /api/v1/me`` (token check and HTTP stack,
   no S3, no audit) fired the same way: what any request costs here;
2. listening: ``--streams`` players, each asking for its next 64 KiB when the last has played.
The last lines say what a burst needs at least: the S3 ceiling, plus the replica's CPU for the
burst spread over the replicas that share it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
from minio import Minio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callrec.api.tokens import Role
from callrec.avro.events import CallStatus
from callrec.infra.kafka import KafkaBroker, ensure_kafka_jars
from callrec.infra.procs import free_port
from callrec.infra.s3 import S3Server, ensure_versitygw
from callrec.infra.topics import ensure_topics
from tests.api.harness import Site, archive, call_record, make_wav, wait_for
from tests.conftest import cache_dir
from tests.sinks.harness import publish


async def first_byte(client: httpx.AsyncClient, url: str, headers: dict[str, str],
                     status: int = 206) -> float:
    t = time.perf_counter()
    async with client.stream("GET", url, headers=headers) as response:
        chunks = response.aiter_raw()
        await anext(chunks)
        ttfb = time.perf_counter() - t
        async for _ in chunks:
            pass
    assert response.status_code == status, response.status_code
    return ttfb


async def listeners(url: str, token: str, streams: int, size: int, seconds: float,
                    bytes_per_s: int) -> list[float]:
    """``streams`` players at once, each asking for the next 64 KiB when the previous has
    played (a 64 KiB range of 8 kHz stereo is 2 s of audio), arrivals spread over the first 2 s:
    what 100 people listening at the same time cause."""
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    period = 65536 / bytes_per_s
    out: list[float] = []

    async def player(n: int, client: httpx.AsyncClient) -> None:
        await asyncio.sleep(period * n / streams)
        offset = 44 + (n * 65536 * 3) % (size - 65536)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            out.append(await first_byte(client, url, {
                "Authorization": f"Bearer {token}", "Range": f"bytes={offset}-{offset + 65535}"}))
            offset = 44 + (offset + 65536) % (size - 65536 - 44)
            await asyncio.sleep(max(0.0, period - (time.perf_counter() - t)))

    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(player(n, client) for n in range(streams)))
    return out


async def rounds(urls: list[str], headers_of: list[dict[str, str]], n: int,
                 status: int = 206) -> list[float]:
    limits = httpx.Limits(max_connections=len(urls), max_keepalive_connections=len(urls))
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        out: list[float] = []
        for _ in range(n):
            out += await asyncio.gather(*(first_byte(client, u, h, status)
                                          for u, h in zip(urls, headers_of, strict=True)))
        return out


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def main() -> None:
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--listen-s", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = KafkaBroker(libs=ensure_kafka_jars(cache_dir()), data_dir=tmp / "kafka",
                             port=free_port(), controller_port=free_port())
        s3 = S3Server(binary=ensure_versitygw(cache_dir()), data_dir=tmp / "nas",
                      state_dir=tmp / "s3", access_key="bench-" + secrets.token_hex(6),
                      secret_key=secrets.token_hex(16), port=free_port())
        broker.start()
        s3.start()
        try:
            asyncio.run(ensure_topics(broker.bootstrap, 6))
            minio = Minio(s3.endpoint, s3.access_key, s3.secret_key, secure=False)
            minio.make_bucket("recordings")
            site = Site(broker, s3, minio, "recordings", tmp / "site")
            call = call_record("Bench:1", near="1001", far="2001", started=datetime.now(UTC),
                               status=CallStatus.COMPLETED, seconds=60)
            wav = make_wav(60.0)
            archived = archive(minio, "recordings", call, wav)
            asyncio.run(publish(broker.bootstrap, [call, archived]))
            token = site.token(Role.viewer)
            replica = site.replica("bench-api")
            replica.start()
            try:
                url = f"{replica.url}/api/v1/calls/{quote(call.call_key, safe='')}/recording"
                wait_for(lambda: httpx.get(url, headers={"Authorization": f"Bearer {token}",
                                                         "Range": "bytes=0-0"}).status_code
                         == 206, 30, "recording visible")
                rng = random.Random(3)
                starts = [rng.randrange(44, len(wav) - 65536) for _ in range(args.streams)]
                ranges = [{"Range": f"bytes={s}-{s + 65535}"} for s in starts]
                api_headers = [{"Authorization": f"Bearer {token}", **r} for r in ranges]
                pid = replica.process.pid()
                s3_pid = s3.process.pid()
                assert pid is not None and s3_pid is not None
                me = f"{replica.url}/api/v1/me"
                me_headers = [{"Authorization": f"Bearer {token}"}] * args.streams
                cpu0 = cpu_seconds(pid)
                light = asyncio.run(rounds([me] * args.streams, me_headers, args.rounds, 200))
                floor_cpu = cpu_seconds(pid) - cpu0
                cpu0 = cpu_seconds(pid)
                api = asyncio.run(rounds([url] * args.streams, api_headers, args.rounds))
                server_cpu = cpu_seconds(pid) - cpu0
                direct_url = minio.presigned_get_object("recordings", archived.object_key)
                s3_cpu0 = cpu_seconds(s3_pid)
                direct = asyncio.run(rounds([direct_url] * args.streams, ranges, args.rounds))
                s3_cpu = cpu_seconds(s3_pid) - s3_cpu0
                playing = asyncio.run(listeners(url, token, args.streams, len(wav),
                                                args.listen_s, 32_000))
            finally:
                replica.stop()
        finally:
            s3.stop()
            broker.stop()
    load = os.getloadavg()
    cores = os.cpu_count() or 1
    per_request = server_cpu / len(api) * 1000
    burst_cpu = per_request * args.streams
    print(f"machine: {cores} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          "(shared: every figure is also given against a ceiling measured in this run)")
    print(f"burst, {args.streams} Range requests at the same instant x {args.rounds} rounds, "
          f"audit acknowledged by Kafka first: time to first byte p50 {pct(api, 50):.0f} ms, "
          f"p99 {pct(api, 99):.0f} ms (goal < 100 ms)")
    print(f"  ceiling, S3 alone at the same burst: p50 {pct(direct, 50):.0f} ms, "
          f"p99 {pct(direct, 99):.0f} ms; ratio ceiling/replica p50 "
          f"{pct(direct, 50) / pct(api, 50):.2f}, p99 {pct(direct, 99) / pct(api, 99):.2f}; "
          f"the S3 server's CPU {s3_cpu / len(direct) * 1000:.1f} ms per request")
    print(f"  replica CPU {per_request:.1f} ms per request ({len(api) / server_cpu:,.0f} "
          f"requests per CPU-second, one core); floor, GET /me (token + HTTP stack only): "
          f"{floor_cpu / len(light) * 1000:.1f} ms per request, time to first byte p99 "
          f"{pct(light, 99):.0f} ms")
    s3_p99 = pct(direct, 99)
    needed = (f"{math.ceil(burst_cpu / (100 - s3_p99))} replica(s), a core each,"
              if s3_p99 < 100 else "no number of replicas can help: S3 alone is over it")
    print(f"  a burst needs at least S3's p99 ({s3_p99:.0f} ms) + {burst_cpu:.0f} ms of one "
          f"core / replicas: for p99 < 100 ms, {needed} with S3 and Kafka on cores of their own")
    print(f"playback, {args.streams} listeners playing at once (a 64 KiB Range every 2 s each, "
          f"{len(playing)} requests): time to first byte p50 {pct(playing, 50):.0f} ms, "
          f"p99 {pct(playing, 99):.0f} ms (goal < 100 ms)")

if __name__ == "__main__":
    main()
