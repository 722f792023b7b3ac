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
from urllib.parse import quote, urlsplit

import httptools
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


class _Response:
    def __init__(self) -> None:
        self.first_body: float | None = None
        self.complete = False

    def on_body(self, body: bytes) -> None:
        if self.first_body is None:
            self.first_body = time.perf_counter()

    def on_message_complete(self) -> None:
        self.complete = True


class Connection:
    """One keep-alive HTTP/1.1 connection (a player's), parsed by httptools. The load
    generator shares the 2 cores with the server: httpx's connection pool spent more CPU per
    request at 100 connections than the replica did (GET /me p99 ~2 s, the server ~1 ms each)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.head = f"GET {parts.path}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n" \
                    f"Host: {parts.netloc}\r\n"
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    opened = 0
    """Connections opened by all (a server that closes them after each response shows)."""

    async def first_byte(self, headers: dict[str, str], status: int = 206) -> float:
        """Seconds from sending the request to the first body byte; the body is read whole."""
        request = (self.head + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                   + "\r\n").encode()
        t = time.perf_counter()
        reused = self.streams is not None
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
            Connection.opened += 1
        reader, writer = self.streams
        writer.write(request)
        response = _Response()
        parser = httptools.HttpResponseParser(response)
        while not response.complete:
            data = await reader.read(262144)
            if not data:
                self.close()
                if reused:  # the server closed it while idle: once more on a new one
                    return await self.first_byte(headers, status)
                raise ConnectionError("the server closed the connection")
            parser.feed_data(data)
        if not parser.should_keep_alive():
            self.close()
        assert parser.get_status_code() == status, parser.get_status_code()
        assert response.first_body is not None
        return response.first_body - t

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def listeners(url: str, token: str, streams: int, size: int, seconds: float,
                    bytes_per_s: int) -> list[float]:
    """``streams`` players at once, each asking for the next 64 KiB when the previous has
    played (a 64 KiB range of 8 kHz stereo is 2 s of audio), arrivals spread over the first 2 s:
    what 100 people listening at the same time cause."""
    period = 65536 / bytes_per_s
    out: list[float] = []

    async def player(n: int) -> None:
        await asyncio.sleep(period * n / streams)
        offset = 44 + (n * 65536 * 3) % (size - 65536)
        deadline = time.perf_counter() + seconds
        connection = Connection(url)
        try:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                out.append(await connection.first_byte({
                    "Authorization": f"Bearer {token}",
                    "Range": f"bytes={offset}-{offset + 65535}"}))
                offset = 44 + (offset + 65536) % (size - 65536 - 44)
                await asyncio.sleep(max(0.0, period - (time.perf_counter() - t)))
        finally:
            connection.close()

    await asyncio.gather(*(player(n) for n in range(streams)))
    return out


async def rounds(urls: list[str], headers_of: list[dict[str, str]], n: int,
                 status: int = 206) -> tuple[list[float], list[float]]:
    """A first burst on new connections, then ``n`` on the kept-alive ones (as a player's
    browser has them): (first, the n after)."""
    connections = [Connection(u) for u in urls]
    out: list[list[float]] = []
    try:
        for _ in range(n + 1):
            out.append(await asyncio.gather(*(c.first_byte(h, status)
                                              for c, h in zip(connections, headers_of,
                                                              strict=True))))
    finally:
        for c in connections:
            c.close()
    return out[0], [t for burst in out[1:] for t in burst]


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
                cold_light, light = asyncio.run(rounds([me] * args.streams, me_headers,
                                                       args.rounds, 200))
                floor_cpu = cpu_seconds(pid) - cpu0
                cpu0 = cpu_seconds(pid)
                cold, api = asyncio.run(rounds([url] * args.streams, api_headers, args.rounds))
                server_cpu = cpu_seconds(pid) - cpu0
                direct_url = minio.presigned_get_object("recordings", archived.object_key)
                s3_cpu0 = cpu_seconds(s3_pid)
                opened = Connection.opened
                cold_direct, direct = asyncio.run(rounds([direct_url] * args.streams, ranges,
                                                         args.rounds))
                s3_cpu = cpu_seconds(s3_pid) - s3_cpu0
                s3_connections = Connection.opened - opened
                playing = asyncio.run(listeners(url, token, args.streams, len(wav),
                                                args.listen_s, 32_000))
            finally:
                replica.stop()
        finally:
            s3.stop()
            broker.stop()
    load = os.getloadavg()
    cores = os.cpu_count() or 1
    per_request = server_cpu / (len(api) + len(cold)) * 1000
    burst_cpu = per_request * args.streams
    print(f"machine: {cores} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          "(shared: every figure is also given against a ceiling measured in this run)")
    print(f"burst, {args.streams} Range requests at the same instant x {args.rounds} rounds on "
          f"open connections, audit acknowledged by Kafka first: time to first byte "
          f"p50 {pct(api, 50):.0f} ms, p99 {pct(api, 99):.0f} ms (goal < 100 ms); the first "
          f"burst, on new connections: p99 {pct(cold, 99):.0f} ms (S3 alone "
          f"{pct(cold_direct, 99):.0f} ms)")
    print(f"  ceiling, S3 alone at the same burst: p50 {pct(direct, 50):.0f} ms, "
          f"p99 {pct(direct, 99):.0f} ms; ratio ceiling/replica p50 "
          f"{pct(direct, 50) / pct(api, 50):.2f}, p99 {pct(direct, 99) / pct(api, 99):.2f}; "
          f"the S3 server's CPU {s3_cpu / (len(direct) + len(cold_direct)) * 1000:.1f} ms "
          f"per request; {s3_connections} connections for {len(direct) + len(cold_direct)} "
          "requests")
    floor = floor_cpu / (len(light) + len(cold_light)) * 1000
    print(f"  replica CPU {per_request:.1f} ms per request ({1000 / per_request:,.0f} requests "
          f"per CPU-second, one core); floor, GET /me (token + HTTP stack only): {floor:.1f} ms "
          f"per request, time to first byte p99 {pct(light, 99):.0f} ms")
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
