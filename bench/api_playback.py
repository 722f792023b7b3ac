"""Playback benchmark, run by hand: `.venv/bin/python bench/api_playback.py [--streams 100]`.

A Kafka broker, the S3 server and one REST replica started here on free ports; distinct 60 s
stereo WAV recordings archived (one per stream and round, so a "cold" request really is the
first read of its recording). Time to first byte of 64 KiB ranged GETs (each access event is
acknowledged by Kafka before that byte), p50/p99, goal p99 < 100 ms with 100 concurrent streams:
1. cold burst: ``--cold-rounds`` rounds of ``--streams`` requests fired at the same instant, each
   the first read of its own recording (every stream starts a new call at once): bounded by S3;
2. warm burst: ``--rounds`` rounds of the same, each stream seeking again in the recording it
   read in the last cold round (a player's later ranges; served from the replica's cache once
   it holds it);
   ceiling for both: the same ranged GETs straight from the S3 server at the same concurrency,
   with no audit, in the same run (and the S3 server's own CPU per request);
   floor: the replica's CPU per request of ``GET /api/v1/me`` (token check and HTTP stack,
   no S3, no audit) fired the same way: what any request costs here;
3. listening: ``--streams`` players, each asking for its next 64 KiB when the last has played.
All requests to the replica go over ``--streams`` kept-alive connections (a player's browser
keeps its connection). Run it with an older tree first on PYTHONPATH (and as the working
directory) to compare before/after: a replica without a cache says so and serves from S3.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import httptools
import httpx
from minio import Minio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callrec.api.tokens import Role
from callrec.avro.events import CallRecord, CallStatus, RecordingArchived
from callrec.infra.kafka import KafkaBroker, ensure_kafka_jars
from callrec.infra.procs import free_port
from callrec.infra.s3 import S3Server, ensure_versitygw
from callrec.infra.topics import ensure_topics
from tests.api.harness import Site, archive, call_record, make_wav, wait_for
from tests.conftest import cache_dir
from tests.sinks.harness import publish

RANGE = 65536


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

    def __init__(self, origin: str) -> None:
        parts = urlsplit(origin)
        self.host, self.port, self.netloc = parts.hostname or "", parts.port or 80, parts.netloc
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    opened = 0
    """Connections opened by all (a server that closes them after each response shows)."""

    async def first_byte(self, target: str, headers: dict[str, str], status: int = 206) -> float:
        """Seconds from sending the request to the first body byte; the body is read whole."""
        request = (f"GET {target} HTTP/1.1\r\nHost: {self.netloc}\r\n"
                   + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
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
                    return await self.first_byte(target, headers, status)
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


Request = tuple[str, dict[str, str]]
"""A request target (path and query) and its headers."""


async def burst(connections: list[Connection], requests: list[Request],
                status: int = 206) -> list[float]:
    """One request per connection, all fired at the same instant."""
    return list(await asyncio.gather(*(c.first_byte(t, h, status)
                                       for c, (t, h) in zip(connections, requests,
                                                            strict=True))))


def seeks(targets: list[str], headers: dict[str, str], size: int,
          rng: random.Random) -> list[Request]:
    """A 64 KiB range at a random place of each target."""
    out = []
    for target in targets:
        start = rng.randrange(44, size - RANGE)
        out.append((target, {**headers, "Range": f"bytes={start}-{start + RANGE - 1}"}))
    return out


async def listeners(connections: list[Connection], targets: list[str], token: str,
                    size: int, seconds: float, bytes_per_s: int) -> list[float]:
    """A player per connection, each asking for the next 64 KiB of its recording when the
    previous has played (64 KiB of 8 kHz stereo is 2 s of audio), arrivals spread over the
    first 2 s: what that many people listening at the same time cause."""
    period = RANGE / bytes_per_s
    out: list[float] = []

    async def player(n: int, connection: Connection, target: str) -> None:
        await asyncio.sleep(period * n / len(connections))
        offset = 44 + (n * RANGE * 3) % (size - RANGE)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            out.append(await connection.first_byte(target, {
                "Authorization": f"Bearer {token}",
                "Range": f"bytes={offset}-{offset + RANGE - 1}"}))
            offset = 44 + (offset + RANGE) % (size - RANGE - 44)
            await asyncio.sleep(max(0.0, period - (time.perf_counter() - t)))

    await asyncio.gather(*(player(n, c, t) for n, (c, t)
                           in enumerate(zip(connections, targets, strict=True))))
    return out


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def seed(site: Site, sets: int, streams: int, wav: bytes) -> list[list[RecordingArchived]]:
    """``sets`` x ``streams`` calls, each with its own archived object (the same bytes: what
    matters is that no object was read before)."""
    started = datetime.now(UTC) - timedelta(hours=1)
    out: list[list[RecordingArchived]] = []
    events: list[CallRecord | RecordingArchived] = []
    for s in range(sets):
        row = []
        for n in range(streams):
            call = call_record(f"Bench:{s}{n:05d}", near="1001", far="2001", started=started,
                               status=CallStatus.COMPLETED, seconds=60)
            row.append(archive(site.minio, site.bucket, call, wav))
            events += [call, row[-1]]
        out.append(row)
    asyncio.run(publish(site.kafka.bootstrap, events))
    return out


async def cache_stats(url: str) -> dict[str, int] | None:
    """The replica's cache counters (None: a replica from before the cache)."""
    async with httpx.AsyncClient() as client:
        cache: dict[str, int] | None = (await client.get(f"{url}/healthz")).json().get("cache")
        return cache


async def fills_done(url: str, expected: int) -> float | None:
    """Seconds until the replica holds ``expected`` recordings filled (or refused)."""
    t = time.perf_counter()
    while (stats := await cache_stats(url)) is not None:
        if stats["filled"] + stats["refused"] >= expected:
            return time.perf_counter() - t
        if time.perf_counter() - t > 60:
            raise TimeoutError(f"cache fills: {stats} after 60 s, {expected} expected")
        await asyncio.sleep(0.1)
    return None


class Cpu:
    """CPU seconds a process spends between ``start`` and ``stop``, summed over calls."""

    def __init__(self, pid: int) -> None:
        self.pid, self.total, self._t0 = pid, 0.0, 0.0

    def start(self) -> None:
        self._t0 = cpu_seconds(self.pid)

    def stop(self) -> None:
        self.total += cpu_seconds(self.pid) - self._t0


async def measure(args: argparse.Namespace, url: str, token: str, recordings: list[list[str]],
                  size: int, direct: list[str], pid: int, s3_pid: int) -> dict[str, object]:
    rng = random.Random(3)
    auth = {"Authorization": f"Bearer {token}"}
    conns = [Connection(url) for _ in range(args.streams)]
    me: list[Request] = [("/api/v1/me", auth)] * args.streams
    out: dict[str, object] = {}
    try:
        await burst(conns, me, 200)  # opens the connections
        cpu = Cpu(pid)
        cpu.start()
        light = [t for _ in range(args.rounds) for t in await burst(conns, me, 200)]
        cpu.stop()
        out["floor"], out["floor_cpu"] = light, cpu.total / len(light)
        cold: list[float] = []
        fill_s: list[float] = []
        cpu, fill_cpu = Cpu(pid), Cpu(pid)
        for r in range(args.cold_rounds):
            cpu.start()
            cold += await burst(conns, seeks(recordings[r], auth, size, rng))
            cpu.stop()
            fill_cpu.start()
            filled = await fills_done(url, (r + 1) * args.streams)
            fill_cpu.stop()
            if filled is not None:
                fill_s.append(filled)
        out["cold"], out["cold_cpu"], out["fill_s"] = cold, cpu.total / len(cold), fill_s
        out["fill_cpu"] = fill_cpu.total / len(cold)
        cpu = Cpu(pid)
        cpu.start()
        warm = [t for _ in range(args.rounds)
                for t in await burst(conns, seeks(recordings[-1], auth, size, rng))]
        cpu.stop()
        out["warm"], out["warm_cpu"] = warm, cpu.total / len(warm)
        out["playing"] = await listeners(conns, recordings[-1], token, size, args.listen_s,
                                         32_000)
        out["cache"] = await cache_stats(url)
    finally:
        for c in conns:
            c.close()
    parts = urlsplit(direct[0])
    s3_conns = [Connection(f"{parts.scheme}://{parts.netloc}") for _ in range(args.streams)]
    targets = [f"{urlsplit(u).path}?{urlsplit(u).query}" for u in direct]
    opened = Connection.opened
    try:
        await burst(s3_conns, seeks(targets, {}, size, rng))
        cpu = Cpu(s3_pid)
        cpu.start()
        s3 = [t for _ in range(args.rounds)
              for t in await burst(s3_conns, seeks(targets, {}, size, rng))]
        cpu.stop()
    finally:
        for c in s3_conns:
            c.close()
    out["s3"], out["s3_cpu"] = s3, cpu.total / len(s3)
    out["s3_connections"] = Connection.opened - opened
    return out


def report(args: argparse.Namespace, m: dict[str, object]) -> None:
    def ms(key: str) -> list[float]:
        values = m[key]
        assert isinstance(values, list)
        return values

    def cpu(key: str) -> float:
        value = m[key]
        assert isinstance(value, float)
        return value * 1000

    load = os.getloadavg()
    s3 = ms("s3")
    n = args.streams
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f} (shared: every figure is also given against a ceiling measured in "
          "this run)")
    print(f"ceiling, S3 alone, {n} ranged GETs at the same instant x {args.rounds} on open "
          f"connections: time to first byte p50 {pct(s3, 50):.0f} ms, p99 {pct(s3, 99):.0f} ms;"
          f" the S3 server's CPU {cpu('s3_cpu'):.1f} ms per request; "
          f"{m['s3_connections']} connections opened for {len(s3) + n} requests")
    for key, what in (("cold", f"cold burst, {n} first reads of {n} recordings at the same "
                               f"instant x {args.cold_rounds}"),
                      ("warm", f"warm burst, {n} seeks in those recordings at the same "
                               f"instant x {args.rounds}")):
        values = ms(key)
        print(f"{what}, audit acknowledged by Kafka first: time to first byte "
              f"p50 {pct(values, 50):.0f} ms, p99 {pct(values, 99):.0f} ms (goal < 100 ms); "
              f"ratio S3-alone/replica p50 {pct(s3, 50) / pct(values, 50):.2f}, "
              f"p99 {pct(s3, 99) / pct(values, 99):.2f}; replica CPU {cpu(key + '_cpu'):.2f} ms "
              f"per request ({1000 / cpu(key + '_cpu'):,.0f} per CPU-second)")
    fills = m["fill_s"]
    assert isinstance(fills, list)
    cache = m["cache"]
    if cache is None:
        print("  this replica has no recording cache: every request reads S3")
    else:
        print(f"  then the background fills (whole recordings read and sha256-checked): "
              f"{cpu('fill_cpu'):.2f} ms of replica CPU per recording, done "
              f"{max(fills, default=0):.1f} s after a burst at most; cache now {cache}")
    print(f"floor, GET /me at the same burst (token + HTTP stack only): replica CPU "
          f"{cpu('floor_cpu'):.2f} ms per request, time to first byte p50 "
          f"{pct(ms('floor'), 50):.0f} ms, p99 {pct(ms('floor'), 99):.0f} ms")
    playing = ms("playing")
    print(f"playback, {n} listeners playing at once (a 64 KiB Range every 2 s each, "
          f"{len(playing)} requests): time to first byte p50 {pct(playing, 50):.0f} ms, "
          f"p99 {pct(playing, 99):.0f} ms (goal < 100 ms)")


def main() -> None:
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cold-rounds", type=int, default=2)
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
            wav = make_wav(60.0)
            sets = seed(site, max(args.cold_rounds, 1), args.streams, wav)
            token = site.token(Role.viewer)
            replica = site.replica("bench-api")
            replica.start()
            try:
                def path(rec: RecordingArchived) -> str:
                    return f"/api/v1/calls/{quote(rec.call_key, safe='')}/recording"

                last = f"{replica.url}{path(sets[-1][-1])}"
                wait_for(lambda: httpx.head(last, headers={"Authorization": f"Bearer {token}"}
                                            ).status_code == 200, 60, "recordings visible")
                pid, s3_pid = replica.process.pid(), s3.process.pid()
                assert pid is not None and s3_pid is not None
                direct = [minio.presigned_get_object("recordings", r.object_key)
                          for r in sets[-1]]
                measured = asyncio.run(measure(
                    args, replica.url, token, [[path(r) for r in row] for row in sets],
                    len(wav), direct, pid, s3_pid))
            finally:
                replica.stop()
        finally:
            s3.stop()
            broker.stop()
    report(args, measured)


if __name__ == "__main__":
    main()
