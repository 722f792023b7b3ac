"""How many concurrent CUCM calls one recorder process records with zero lost chunks.

Run by hand: ``.venv/bin/python bench/recorder_load.py --calls 250 --seconds 20``. It starts a
Kafka broker (or uses ``--bootstrap``), one recorder process, sets up ``calls`` two-leg calls with
delayed-offer INVITEs (our own minimal UAC), then a separate sender process streams G.711 RTP
(20 ms, 160-byte payloads) to every leg. It prints the recorder's CPU use as cores and as
CPU-seconds per call-minute, calls per core, p50/p99 chunk latency (chunk closed -> visible to
a Kafka consumer), and whether every packet sent arrived in a contiguous chunk sequence.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from callrec.avro import codec
from callrec.avro.events import AudioChunk, LegEnded
from callrec.infra.kafka import KafkaBroker, ensure_kafka_jars
from callrec.infra.procs import free_port
from callrec.infra.topics import ensure_topics
from callrec.producers.rtp import build_rtp

PARTITIONS = 6
PTIME_S = 0.02
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAYLOADS = [bytes((n * 37 + k * 11) & 0xFF for k in range(160)) for n in range(251)]
"""A different 20 ms PCMA frame per sequence number (251 of them, prime), so a recording can be
checked frame by frame against what was sent."""


def payload_of(seq: int) -> bytes:
    return PAYLOADS[seq % len(PAYLOADS)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def sip_request(method: str, port: int, call_id: str, leg: str, refci: str, cseq: int,
                to_tag: str = "", body: str = "", local_port: int = 0) -> bytes:  # fmt: skip
    to = "<sip:7878@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"{method} sip:7878@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};rport;branch=z9hG4bK{uuid.uuid4().hex}\r\n"
        f"From: <sip:1001@cucm;{leg};x-refci={refci};x-nearendclusterid=BENCH;"
        f"x-nearendaddr=1001;x-farendaddr=1000>;tag=t{call_id}\r\n"
        f"To: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
        f"Contact: <sip:cucm@127.0.0.1:{local_port}>\r\nMax-Forwards: 70\r\n"
    )
    if body:
        return (head + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
                + body).encode()  # fmt: skip
    return (head + "Content-Length: 0\r\n\r\n").encode()


def answer_sdp(rtp_port: int) -> str:
    return (
        "v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n"
    )


class Uac:
    """Just enough of CUCM's side to open and close legs; the bench's own SIP client."""

    def __init__(self, recorder_port: int) -> None:
        self.recorder_port = recorder_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]

    def _transact(self, message: bytes, expect: str) -> str:
        for _ in range(5):
            self.sock.sendto(message, ("127.0.0.1", self.recorder_port))
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                try:
                    reply = self.sock.recv(65535).decode()
                except TimeoutError:
                    break
                if reply.startswith(f"SIP/2.0 {expect}"):
                    return reply
                if not reply.startswith("SIP/2.0 1"):
                    raise RuntimeError(reply.splitlines()[0])
        raise RuntimeError(f"no {expect} from the recorder")

    def open_leg(self, call_id: str, leg: str, refci: str, sender_port: int) -> tuple[int, str]:
        reply = self._transact(
            sip_request("INVITE", self.recorder_port, call_id, leg, refci, 1,
                        local_port=self.port), "200")  # fmt: skip
        to_tag = re.search(r"^To:.*;tag=([^;\r\n]+)", reply, re.M | re.I).group(1)  # type: ignore[union-attr]
        rtp_port = int(re.search(r"^m=audio (\d+)", reply, re.M).group(1))  # type: ignore[union-attr]
        ack = sip_request("ACK", self.recorder_port, call_id, leg, refci, 1, to_tag,
                          answer_sdp(sender_port), self.port)  # fmt: skip
        self.sock.sendto(ack, ("127.0.0.1", self.recorder_port))
        return rtp_port, to_tag

    def close_leg(self, call_id: str, leg: str, refci: str, to_tag: str) -> None:
        self._transact(
            sip_request("BYE", self.recorder_port, call_id, leg, refci, 2, to_tag,
                        local_port=self.port), "200")  # fmt: skip


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


async def tail_sample(
    bootstrap: str,
    stop: asyncio.Event,
    latencies: list[float],
    ended: dict[str, LegEnded],
    start: dict[TopicPartition, int],
) -> None:
    """During the run: every lifecycle event, and every 20th audio chunk for the latency."""
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
                        latencies.append(now - event.event_time.timestamp())
                    elif isinstance(event, LegEnded) and event.call_key.startswith("BENCH:"):
                        ended[event.leg_id] = event
    finally:
        await consumer.stop()


async def read_all_chunks(
    bootstrap: str, start: dict[TopicPartition, int]
) -> dict[str, list[tuple[int, int]]]:
    """After the run: (chunk_seq, packets) of every chunk published, per leg."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    tps = [tp for tp in start if tp.topic == "rec.audio.v1"]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, start[tp])
    end = await consumer.end_offsets(tps)
    chunks: dict[str, list[tuple[int, int]]] = {}
    try:
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    event = codec.decode(r.value or b"")
                    if isinstance(event, AudioChunk) and event.call_key.startswith("BENCH:"):
                        chunks.setdefault(event.leg_id, []).append(
                            (event.chunk_seq, len(event.packets))
                        )
    finally:
        await consumer.stop()
    return chunks


def udp_receive_buffer_errors() -> int:
    """The host's count of UDP datagrams dropped for a full receive buffer (/proc/net/snmp)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    names, values = [line for line in lines if line[0] == "Udp:"][:2]
    return int(values[names.index("RcvbufErrors")])


def udp_drops(ports: range) -> int:
    """Datagrams the kernel dropped on the recorder's RTP sockets (receive buffer full)."""
    drops = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) in ports:
            drops += int(fields[-1])
    return drops


def start_recorder(bootstrap: str, work: Path, legs: int, sip_port: int) -> subprocess.Popen[bytes]:
    """The recorder as the stack runs it, with RTP ports 40000 and up."""
    env = {
        **os.environ,
        "CALLREC_RECORDER_ID": "bench",
        "CALLREC_RECORDER_KAFKA_BOOTSTRAP": bootstrap,
        "CALLREC_RECORDER_SIP_PORT": str(sip_port),
        "CALLREC_RECORDER_RTP_PORTS": f"40000-{40000 + legs + 100}",
        "CALLREC_RECORDER_MAX_LEGS": str(legs + 10),
        "CALLREC_RECORDER_DATA_DIR": str(work / "recorder"),
        "CALLREC_RECORDER_DRAIN_TIMEOUT_S": "5",
    }
    log = (work / "recorder.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "callrec.producers"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def open_calls(uac: Uac, calls: int, sender_port: int) -> list[tuple[str, str, str, str, int]]:
    """``calls`` two-leg calls: (call_id, leg, refci, to_tag, rtp_port) per leg."""
    opened = []
    for n in range(calls):
        refci = str(10**7 + n)
        for leg in ("x-nearend", "x-farend"):
            call_id = f"{uuid.uuid4().hex}-{leg}"
            rtp_port, to_tag = uac.open_leg(call_id, leg, refci, sender_port)
            opened.append((call_id, leg, refci, to_tag, rtp_port))
    return opened


async def bench(args: argparse.Namespace, bootstrap: str, work: Path) -> None:
    sip_port = free_port()
    legs = args.calls * 2
    recorder = start_recorder(bootstrap, work, legs, sip_port)
    stop_tail = asyncio.Event()
    latencies: list[float] = []
    ended: dict[str, LegEnded] = {}
    start: dict[TopicPartition, int] = {}
    tail = asyncio.create_task(tail_sample(bootstrap, stop_tail, latencies, ended, start))
    rtp_ports = range(40000, 40000 + legs + 101)
    try:
        await asyncio.sleep(3)
        uac = Uac(sip_port)
        opened = open_calls(uac, args.calls, free_port())
        print(f"{args.calls} calls ({legs} legs) set up", flush=True)
        stop_send = multiprocessing.Event()
        sent = multiprocessing.Value("l", 0)
        sender = multiprocessing.Process(
            target=send_rtp, args=([o[4] for o in opened], stop_send, sent), daemon=True
        )
        rcvbuf_errors = udp_receive_buffer_errors()
        sender.start()
        await asyncio.sleep(3)  # warm up
        cpu0, t0, lat0 = cpu_seconds(recorder.pid), time.monotonic(), len(latencies)
        backlog = 0
        while time.monotonic() - t0 < args.seconds:
            await asyncio.sleep(1)
            status = json.loads((work / "recorder" / "status.json").read_text())
            backlog = max(backlog, status["spool_backlog_events"])
        cpu1, t1 = cpu_seconds(recorder.pid), time.monotonic()
        window = latencies[lat0:]
        stop_send.set()
        sender.join()
        await asyncio.sleep(0.5)
        drops = udp_drops(rtp_ports)  # before the BYEs close the sockets that count them
        rcvbuf_errors = udp_receive_buffer_errors() - rcvbuf_errors
        for call_id, leg, refci, to_tag, _ in opened:
            uac.close_leg(call_id, leg, refci, to_tag)
        deadline = time.monotonic() + 120
        while len(ended) < legs and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    finally:
        stop_tail.set()
        await tail
        os.kill(recorder.pid, signal.SIGTERM)
        recorder.wait(30)
    cores = (cpu1 - cpu0) / (t1 - t0)
    call_minutes = args.calls * (t1 - t0) / 60
    per_leg_sent = sent.value  # type: ignore[attr-defined]
    chunks = await read_all_chunks(bootstrap, start)
    lost_chunks = duplicated_chunks = missing_packets = 0
    for leg_id, end in ended.items():
        seqs = [seq for seq, _ in chunks.get(leg_id, [])]
        lost_chunks += end.chunk_count - len(set(seqs))
        duplicated_chunks += len(seqs) - len(set(seqs))
        missing_packets += per_leg_sent - sum(n for _, n in chunks.get(leg_id, []))
    window.sort()
    pct = lambda q: window[min(len(window) - 1, int(q * len(window)))] * 1000  # noqa: E731
    print(f"legs ended: {len(ended)}/{legs}; packets per leg sent: {per_leg_sent}")
    print(f"chunks lost: {lost_chunks}, duplicated: {duplicated_chunks}; "
          f"packets missing: {missing_packets} (kernel drops on RTP sockets: {drops}, "
          f"host-wide UDP receive-buffer drops: {rcvbuf_errors})")
    print(f"RTP rate: {legs / PTIME_S:,.0f} packets/s; recorder CPU: {cores:.3f} cores")
    print(f"CPU-seconds per call-minute: {(cpu1 - cpu0) / call_minutes:.3f}")
    print(f"calls per core at this load: {args.calls / cores:,.0f}")
    print(f"largest recorder backlog (spooled, not yet acknowledged by Kafka): {backlog} events")
    print(f"chunk latency (closed -> consumed) p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=250)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recorder-bench-") as tmp:
        work = Path(tmp)
        broker = None
        bootstrap = args.bootstrap
        if bootstrap is None:
            cache = Path(os.environ.get("CALLREC_CACHE_DIR", Path.home() / ".cache" / "callrec"))
            broker = KafkaBroker(libs=ensure_kafka_jars(cache), data_dir=work / "kafka",
                                 port=free_port(), controller_port=free_port())  # fmt: skip
            broker.start()
            bootstrap = broker.bootstrap
            asyncio.run(ensure_topics(bootstrap, PARTITIONS))
        try:
            asyncio.run(bench(args, bootstrap, work))
        finally:
            if broker is not None:
                broker.stop()


if __name__ == "__main__":
    main()
