"""Test harness for the recorder: the real process, sipp playing CUCM, a tap on the real Kafka."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from callrec.avro import codec
from callrec.avro.events import AudioChunk, Event
from callrec.emulator.audio import G711A_PCAP
from callrec.emulator.ports import PortBook
from callrec.infra.procs import free_port
from tests.conftest import TEST_PARTITIONS

SIPP_DIR = Path(__file__).parent / "sipp"
"""The test-only scenarios (pcap_leg.xml: the emulator's CUCM leg playing a given pcap once)."""
DTMF_PCAP = Path("/usr/share/sip-tester/dtmf_2833_1.pcap")
TOPICS = ("rec.lifecycle.v1", "rec.audio.v1", "rec.recorders.v1")


@dataclass
class RecorderProcess:
    """One recorder run as the stack runs it: ``python -m callrec.producers`` with env vars."""

    data_dir: Path
    bootstrap: str
    recorder_id: str = field(default_factory=lambda: f"rec-{uuid.uuid4().hex[:8]}")
    sip_port: int = field(default_factory=free_port)
    rtp_base: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.data_dir / "status.json").unlink(missing_ok=True)  # a killed run's stays HEALTHY
        if not self.rtp_base:
            self.rtp_base = 30000 + (os.getpid() * 97 + self.sip_port) % 30000 // 100 * 100
        env = {
            **os.environ,
            "CALLREC_RECORDER_ID": self.recorder_id,
            "CALLREC_RECORDER_KAFKA_BOOTSTRAP": self.bootstrap,
            "CALLREC_RECORDER_SIP_HOST": "127.0.0.1",
            "CALLREC_RECORDER_SIP_PORT": str(self.sip_port),
            "CALLREC_RECORDER_RTP_PORTS": f"{self.rtp_base}-{self.rtp_base + 99}",
            "CALLREC_RECORDER_ALLOW": "127.0.0.1",
            "CALLREC_RECORDER_DATA_DIR": str(self.data_dir),
            "CALLREC_RECORDER_DRAIN_TIMEOUT_S": "3",
            **self.extra_env,
        }
        self.log = (self.data_dir.parent / f"{self.recorder_id}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callrec.producers"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def status(self) -> dict[str, object]:
        try:
            loaded: dict[str, object] = json.loads((self.data_dir / "status.json").read_text())
            return loaded
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def wait_for(self, predicate: Callable[[dict[str, object]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log_tail()
            if predicate(self.status()):
                return
            time.sleep(0.1)
        raise AssertionError(f"recorder status never matched: {self.status()}\n{self.log_tail()}")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        self.wait_for(lambda s: s.get("health") == "HEALTHY", timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        path = self.data_dir.parent / f"{self.recorder_id}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


SIPP_PORTS = PortBook()
"""Ports of the test session's live sipp processes."""


async def run_sipp(
    scenario: str | Path,
    recorder: RecorderProcess,
    keys: dict[str, str],
    duration_ms: int = 0,
    local_ip: str = "127.0.0.1",
    limit_s: float = 60.0,
    transport: str = "u1",
    calls: int = 1,
    inject: Path | None = None,
    rate: int = 10,
) -> tuple[int, str]:
    """Play one dialog with sipp (or ``calls`` of them at ``rate`` new calls a second, each taking
    its row of the ``inject`` CSV); returns its exit code and its error log. Its SIP, control
    and media ports (with the three sipp opens beside the media port) are leased free, as the
    emulator does, so concurrent sipps never collide (errno 98)."""
    kind = "tcp" if transport.startswith("t") else "udp"
    with SIPP_PORTS.lease(local_ip, kind) as ports:
        err = recorder.data_dir.parent / f"sipp-{uuid.uuid4().hex[:8]}.err"
        path = SIPP_DIR / scenario
        argv = [
            "sipp", "-sf", str(path), "-m", str(calls), "-l", str(calls), "-r", str(rate),
            "-i", local_ip, "-p", str(ports.sip), "-ci", local_ip, "-cp", str(ports.control),
            "-mi", local_ip, "-mp", str(ports.media),
            "-d", str(duration_ms), "-timeout", f"{int(limit_s)}s", "-nostdin",
            "-trace_err", "-error_file", str(err), "-t", transport,
            f"127.0.0.1:{recorder.sip_port}",
        ]  # fmt: skip
        if inject is not None:
            argv += ["-inf", str(inject)]
        for name, value in keys.items():
            argv += ["-key", name, value]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            rc = await asyncio.wait_for(proc.wait(), limit_s + 10)
        finally:
            if proc.returncode is None:  # timed out, or the test gave up on this dialog
                proc.kill()
                await proc.wait()
        return rc, err.read_text(errors="replace") if err.exists() else ""


def leg_keys(leg: str, refci: str, cluster: str, **extra: str) -> dict[str, str]:
    return {
        "leg": leg,
        "refci": refci,
        "farrefci": str(int(refci) - 1),
        "cluster": cluster,
        "codecs": "8 101",
        "cause": "16",
        "pcap": str(G711A_PCAP),
        "se": "1800",
        **extra,
    }


@contextmanager
def running_recorder(data_dir: Path, bootstrap: str, **extra_env: str) -> Iterator[RecorderProcess]:
    """A recorder process for the block: started, healthy, then stopped cleanly (exit 0)."""
    proc = RecorderProcess(data_dir=data_dir, bootstrap=bootstrap, extra_env=extra_env)
    proc.start()
    try:
        proc.wait_healthy()
        yield proc
    finally:
        assert proc.stop() == 0, proc.log_tail()


class EventTap:
    """Reads the contract topics from their current end; keeps events of the given call keys."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.events: list[Event] = []

    async def start(self) -> None:
        await self.consumer.start()
        deadline = time.monotonic() + 10  # a broker just started may answer metadata empty
        while not set(TOPICS) <= (known := await self.consumer.topics()):
            assert time.monotonic() < deadline, f"contract topics missing: {known}"
            await asyncio.sleep(0.2)
        partitions = [TopicPartition(t, p) for t in TOPICS for p in range(TEST_PARTITIONS)]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self.consumer.position(tp)

    async def stop(self) -> None:
        await self.consumer.stop()

    async def __aenter__(self) -> EventTap:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def until(
        self, done: Callable[[list[Event]], bool], limit_s: float = 30.0
    ) -> list[Event]:
        deadline = time.monotonic() + limit_s
        while not done(self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; have {summary(self.events)}")
            batches = await self.consumer.getmany(timeout_ms=200)
            for records in batches.values():
                self.events.extend(codec.decode(r.value or b"") for r in records)
        return self.events

    def of(self, call_key: str) -> list[Event]:
        return [e for e in self.events if getattr(e, "call_key", None) == call_key]


def summary(events: list[Event]) -> list[str]:
    return [
        f"{type(e).__name__}:{getattr(e, 'leg', '')}:{getattr(e, 'change', '')}"
        f"{getattr(e, 'reason', '')}"
        for e in events
        if not isinstance(e, AudioChunk) and type(e).__name__ != "RecorderHeartbeat"
    ]


def write_rtp_pcap(path: Path, payloads: list[bytes], ptime_ms: int = 20, pt: int = 8) -> Path:
    """An Ethernet/IPv4/UDP pcap of one RTP stream (sipp's play_pcap_audio replays it in time)."""
    samples = ptime_ms * 8
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, payload in enumerate(payloads):
        rtp = struct.pack("!BBHII", 0x80, pt, i & 0xFFFF, (i * samples) & 0xFFFFFFFF, 0x15)
        udp = struct.pack("!HHHH", 6000, 6001, 8 + len(rtp) + len(payload), 0) + rtp + payload
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0x4000,
                                   64, 17, 0, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])))
        words = sum(struct.unpack("!10H", ip))
        while words > 0xFFFF:
            words = (words & 0xFFFF) + (words >> 16)
        ip[10:12] = struct.pack("!H", ~words & 0xFFFF)
        frame = b"\x00" * 12 + b"\x08\x00" + bytes(ip) + udp
        at_us = i * ptime_ms * 1000
        out.append(struct.pack("<IIII", at_us // 1_000_000, at_us % 1_000_000, len(frame),
                               len(frame)) + frame)  # fmt: skip
    path.write_bytes(b"".join(out))
    return path


def send_udp(payload: bytes, port: int, source_ip: str = "127.0.0.1", wait: float = 1.0) -> bytes:
    """One datagram to the recorder's SIP port; the reply, or b'' if none came."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source_ip, 0))
        sock.settimeout(wait)
        sock.sendto(payload, ("127.0.0.1", port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return b""


def options_request(port: int, source_ip: str = "127.0.0.1", method: str = "OPTIONS") -> bytes:
    tag = uuid.uuid4().hex[:8]
    return (
        f"{method} sip:rec@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source_ip}:5070;rport;branch=z9hG4bK{tag}\r\n"
        f"From: <sip:cucm@{source_ip}>;tag={tag}\r\n"
        f"To: <sip:rec@127.0.0.1:{port}>\r\n"
        f"Call-ID: {tag}@{source_ip}\r\n"
        f"CSeq: 1 {method}\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def new_call() -> tuple[str, str]:
    """A cluster id and x-refci no other test uses."""
    return f"C{uuid.uuid4().hex[:6]}", str(uuid.uuid4().int % 10**8 + 10**8)
