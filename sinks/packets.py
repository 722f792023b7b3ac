"""An AudioChunk reduced to what planning needs, so a call of hours is not held as Avro objects.

A recorder's chunk is nearly always ten packets of one source sent back to back: sequence numbers
and RTP timestamps advancing together, equal payloads. Such a chunk is kept as one ``Span`` (its
first packet, the count, the packet size and its arrival times packed in bytes); any other chunk
keeps one ``Row`` per packet. The payloads are not kept here but where ``Payloads`` put them: in
memory for a short call, in a temporary file for the worker (``PayloadFile``), read back when the
chunk is decoded.
"""

from __future__ import annotations

import os
import sys
import tempfile
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

from callrec.avro.events import AudioChunk, Leg
from callrec.sinks.codecs import AudioCodec, codec_named

RTP_TS_MODULUS = 1 << 32
RTP_SEQ_MODULUS = 1 << 16
MAX_PACKET_US = 200_000
"""The longest packet (ptime) a sequence step may stand for; more is a jump, not a packet."""


class Row(NamedTuple):
    """One RTP packet as sent (wrapping sequence and timestamp) and received."""

    seq: int
    ts: int
    ssrc: int
    payload_type: int
    arrival_us: int
    size: int
    """Payload bytes."""


@dataclass(slots=True)
class Span:
    """``count`` packets of one source, each ``size`` audio bytes and ``ticks`` RTP ticks long,
    numbered and stamped one after the other from ``seq`` / ``ts`` (as sent, wrapping).

    Not frozen (nothing changes one): a frozen dataclass costs about three times as much to
    build, and the mixer builds one per chunk as it takes the chunk in."""

    ssrc: int
    seq: int
    ts: int
    count: int
    size: int
    ticks: int
    arrivals: bytes
    """Each packet's arrival (array('q')), to plan the chunk packet by packet if it must be."""
    anchor_us: int
    """min over the packets of arrival - (ts - first ts) in microseconds: when the first
    sample was spoken at the latest (exact: spans exist only for clocks dividing 1 s)."""

    @property
    def first_us(self) -> int:
        return int.from_bytes(self.arrivals[:8], sys.byteorder, signed=True)

    @property
    def last_us(self) -> int:
        return int.from_bytes(self.arrivals[-8:], sys.byteorder, signed=True)

    def rows(self, payload_type: int) -> list[Row]:
        times = array("q", self.arrivals)
        return [Row((self.seq + i) % RTP_SEQ_MODULUS, (self.ts + i * self.ticks) % RTP_TS_MODULUS,
                    self.ssrc, payload_type, times[i], self.size) for i in range(self.count)]


class Payloads(Protocol):
    """Where chunks' payload bytes wait until they are decoded."""

    def put(self, data: bytes) -> object: ...

    def get(self, where: object, length: int) -> bytes: ...


class InMemoryPayloads:
    def put(self, data: bytes) -> object:
        return data

    def get(self, where: object, length: int) -> bytes:
        assert isinstance(where, bytes)
        return where


class PayloadFile:
    """Payloads in an unlinked temporary file: a call costs its index in memory, not its audio."""

    def __init__(self, directory: Path | None = None) -> None:
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        self.file = tempfile.TemporaryFile(dir=directory)
        self.size = 0

    def __enter__(self) -> PayloadFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.file.close()

    def put(self, data: bytes) -> object:
        self.file.write(data)
        self.size += len(data)
        return self.size - len(data)

    def get(self, where: object, length: int) -> bytes:
        assert isinstance(where, int)
        self.file.flush()
        return os.pread(self.file.fileno(), length, where)


class ChunkPackets(NamedTuple):
    """One chunk's packets (a span, or rows in arrival order) and where its payloads are (every
    packet's payload joined in the same order). A tuple: one is built per chunk taken in."""

    leg: Leg
    leg_id: str
    chunk_seq: int
    codec: str
    payload_type: int
    clock_rate: int
    span: Span | None
    rows: tuple[Row, ...]
    payload: object
    store: Payloads

    def packet_rows(self) -> Sequence[Row]:
        return self.span.rows(self.payload_type) if self.span is not None else self.rows

    def payload_length(self) -> int:
        span = self.span
        return span.size * span.count if span is not None else sum(r.size for r in self.rows)

    def payload_bytes(self) -> bytes:
        return self.store.get(self.payload, self.payload_length())


def compact(chunk: AudioChunk, store: Payloads) -> ChunkPackets:
    """The chunk as a span when it is one, else as rows; its payloads handed to ``store``."""
    packets = chunk.packets
    span = _span(chunk)
    rows: tuple[Row, ...] = () if span is not None else tuple(
        Row(p.rtp_seq, p.rtp_timestamp, p.ssrc, p.payload_type, p.arrival_time_us,
            len(p.payload)) for p in packets)
    return ChunkPackets(chunk.leg, sys.intern(chunk.leg_id), chunk.chunk_seq,
                        sys.intern(chunk.codec), chunk.payload_type, chunk.clock_rate, span, rows,
                        store.put(b"".join(p.payload for p in packets)), store)


def _span(chunk: AudioChunk) -> Span | None:
    """A span when every packet is whole audio of the chunk's codec, of one size and source,
    each following the one before by one sequence number and exactly its own length in ticks."""
    packets = chunk.packets
    if not packets:
        return None
    first = packets[0]
    size = len(first.payload)
    clock = chunk.clock_rate
    ticks = span_ticks(codec_named(chunk.codec), clock, size, len(packets))
    if ticks is None:
        return None
    ssrc, pt = first.ssrc, chunk.payload_type
    seq, ts = first.rtp_seq, first.rtp_timestamp
    step_us = ticks * 1_000_000 // clock
    anchor = first.arrival_time_us
    for i, p in enumerate(packets):
        if (p.ssrc != ssrc or p.payload_type != pt or len(p.payload) != size
                or p.rtp_seq != (seq + i) % RTP_SEQ_MODULUS
                or p.rtp_timestamp != (ts + i * ticks) % RTP_TS_MODULUS):
            return None
        anchor = min(anchor, p.arrival_time_us - i * step_us)
    arrivals = array("q", [p.arrival_time_us for p in packets]).tobytes()
    return Span(ssrc, seq, ts, len(packets), size, ticks, arrivals, anchor)


def span_ticks(codec: AudioCodec | None, clock: int, size: int, count: int) -> int | None:
    """RTP ticks of each packet of a would-be span of ``count`` packets of ``size`` bytes; None
    when such packets cannot be a span (one packet, an unknown codec, a clock not dividing 1 s,
    a payload that is not whole frames or not whole ticks, a packet longer than planning takes)."""
    if count < 2 or codec is None or clock <= 0 or 1_000_000 % clock:
        return None
    samples = codec.samples(size)
    if size == 0 or codec.audio_bytes(size) != size or (samples * clock) % codec.sample_rate:
        return None
    ticks = samples * clock // codec.sample_rate
    if ticks <= 0 or ticks * 1_000_000 > MAX_PACKET_US * clock:
        return None
    return ticks
