"""What the recorder benches share: the RTP sender, the bare-receiver ceiling, CPU and load.

The ceiling is a process that owns as many RTP sockets as the recorder (``PortPool``, the same
socket options) and reads them on an asyncio loop with ``read_stamped`` handing every datagram to
a no-op: the least any asyncio recorder can spend per packet. Dividing the recorder's CPU per
packet by it, both measured in the same run at the same packet rate, gives a figure that does not
move with the machine's load the way calls per core does.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.synchronize
import os
import socket
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from callrec.avro import codec
from callrec.avro.events import AudioChunk
from callrec.infra.kafka import KafkaBroker, ensure_kafka_jars
from callrec.infra.procs import free_port
from callrec.infra.topics import ensure_topics
from callrec.producers.media import PortPool, RtpPoller, read_stamped
from callrec.producers.rtp import build_rtp

PARTITIONS = 6
PTIME_S = 0.02
BARE_PORTS = 45_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAYLOADS = [bytes((n * 37 + k * 11) & 0xFF for k in range(160)) for n in range(251)]
"""A different 20 ms PCMA frame per sequence number (251 of them, prime), so a recording can be
checked frame by frame against what was sent."""


def payload_of(seq: int) -> bytes:
    return PAYLOADS[seq % len(PAYLOADS)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_load() -> str:
    """The 1/5/15-minute load averages and the core count: what other work shared the run."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} cores"


def send_rtp(ports: list[int], stop: multiprocessing.synchronize.Event, sent: multiprocessing.Array) -> None:  # type: ignore[name-defined]  # noqa: E501
    """The phones: one 20 ms PCMA packet per leg per tick, paced on the monotonic clock."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    seq = 0
    start = time.monotonic()
    while not stop.is_set():
        payload = payload_of(seq)
        for i, port in enumerate(ports):
            sock.sendto(build_rtp(seq, seq * 160, 1000 + i, 8, payload), ("127.0.0.1", port))
        seq += 1
        sent.value = seq  # type: ignore[attr-defined]
        delay = start + seq * PTIME_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)


@dataclass
class Sender:
    """A running ``send_rtp`` process; ``ticks`` is how many packets each leg has been sent."""

    proc: multiprocessing.Process
    stop_event: multiprocessing.synchronize.Event
    sent: object

    @property
    def ticks(self) -> int:
        return int(self.sent.value)  # type: ignore[attr-defined]

    def stop(self) -> None:
        self.stop_event.set()
        self.proc.join()


def start_sending(ports: list[int]) -> Sender:
    stop = multiprocessing.Event()
    sent = multiprocessing.Value("l", 0)
    proc = multiprocessing.Process(target=send_rtp, args=(ports, stop, sent), daemon=True)
    proc.start()
    return Sender(proc, stop, sent)


@dataclass(frozen=True)
class CpuWindow:
    """A process's CPU over a window and the RTP packets sent to it meanwhile."""

    cores: float
    packets_per_s: float

    @property
    def us_per_packet(self) -> float:
        return self.cores / self.packets_per_s * 1e6


async def measure(pid: int, sender: Sender, legs: int, seconds: float,
                  each_second: Callable[[], None] = lambda: None) -> CpuWindow:  # fmt: skip
    """CPU of ``pid`` over ``seconds`` while ``sender`` streams to ``legs`` legs."""
    cpu0, t0, ticks0 = cpu_seconds(pid), time.monotonic(), sender.ticks
    while time.monotonic() - t0 < seconds:
        await asyncio.sleep(min(1.0, seconds))
        each_second()
    cpu1, t1, ticks1 = cpu_seconds(pid), time.monotonic(), sender.ticks
    return CpuWindow((cpu1 - cpu0) / (t1 - t0), legs * (ticks1 - ticks0) / (t1 - t0))


def bare_receiver(ports: range, ready: multiprocessing.synchronize.Event,
                  stop: multiprocessing.synchronize.Event, polled: bool) -> None:  # fmt: skip
    """The ceiling: the recorder's sockets, with nothing done with the datagrams; read through
    the event loop's ``add_reader`` per socket (``read_stamped``, the issue's bare asyncio
    receiver), or ``polled`` in the recorder's rounds (``RtpPoller``)."""
    pool = PortPool("127.0.0.1", ports)
    socks = [pool.acquire()[1] for _ in ports]
    loop = asyncio.new_event_loop()
    poller = RtpPoller(loop)
    for sock in socks:
        if polled:
            poller.add(sock, lambda *_: None)
        else:
            loop.add_reader(sock.fileno(), read_stamped, sock, lambda *_: None)
    ready.set()
    loop.run_until_complete(asyncio.to_thread(stop.wait))


async def bare_ceiling(legs: int, seconds: float, polled: bool = False) -> CpuWindow:
    """The bare receiver's CPU at the packet rate of ``legs`` legs."""
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    ports = range(BARE_PORTS, BARE_PORTS + legs)
    receiver = multiprocessing.Process(target=bare_receiver, args=(ports, ready, stop, polled))
    receiver.start()
    ready.wait(30)
    sender = start_sending(list(ports))
    try:
        await asyncio.sleep(2)  # warm up
        return await measure(receiver.pid or 0, sender, legs, seconds)
    finally:
        sender.stop()
        stop.set()
        receiver.join(10)


def udp_drops(ports: range) -> int:
    """Datagrams the kernel dropped on the recorder's RTP sockets (receive buffer full)."""
    drops = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) in ports:
            drops += int(fields[-1])
    return drops


async def read_audio_chunks(
    bootstrap: str, start: dict[TopicPartition, int]
) -> dict[str, list[AudioChunk]]:
    """After the run: every bench AudioChunk published since ``start``, per leg."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    tps = [tp for tp in start if tp.topic == "rec.audio.v1"]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, start[tp])
    end = await consumer.end_offsets(tps)
    chunks: dict[str, list[AudioChunk]] = {}
    try:
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    event = codec.decode(r.value or b"")
                    if isinstance(event, AudioChunk) and event.call_key.startswith("BENCH:"):
                        chunks.setdefault(event.leg_id, []).append(event)
    finally:
        await consumer.stop()
    return chunks


def with_broker(bootstrap: str | None, prefix: str,
                run: Callable[[str, Path], Coroutine[Any, Any, None]]) -> None:  # fmt: skip
    """Run ``run(bootstrap, work_dir)`` against ``bootstrap``, or a Kafka broker started here."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        broker = None
        if bootstrap is None:
            cache = Path(os.environ.get("CALLREC_CACHE_DIR", Path.home() / ".cache" / "callrec"))
            broker = KafkaBroker(libs=ensure_kafka_jars(cache), data_dir=work / "kafka",
                                 port=free_port(), controller_port=free_port())  # fmt: skip
            broker.start()
            bootstrap = broker.bootstrap
            asyncio.run(ensure_topics(bootstrap, PARTITIONS))
        try:
            asyncio.run(run(bootstrap, work))
        finally:
            if broker is not None:
                broker.stop()
