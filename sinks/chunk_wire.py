"""An AudioChunk's Kafka value -> its packets' summary (packets.py), without building the chunk.

The contract decode (``codec.decode``: fastavro, then pydantic) builds an AudioChunk and ten
packet models for every 200 ms chunk, and ``compact`` then takes them apart again: together most
of the mixer's CPU per call (bench/README.md, "Mixer"). The recorder writes each chunk's packets
with one layout: the same fields, varints of the same widths and payloads of one size, so the
packet array is a table of equal rows. ``read_chunks`` reads each chunk's header field by field
and its packets as that table (numpy): one row per packet, each field's varint bytes in the
same columns, decoded by one product with their place values; the payloads are the table's last
columns, joined by copying them out. numpy costs about a microsecond a call whatever the array,
so a batch of chunks (a Kafka fetch) is read at once: every chunk of one layout in one table.

It reads only the current AudioChunk schema and gives up, leaving the value to the contract
decode, at anything it is not sure of: rows of different layouts (a payload of another size, a
varint that grew a byte), values outside RTP's ranges, and what call state's skim
(``callrec.avro.skim``, whose readers it reuses) is not sure of: an unusual varint, a string
that is not UTF-8, an event id that is not a canonical UUID, a time outside ``datetime``'s
range, truncated or trailing bytes. ``take_in`` then runs the contract decode and ``compact``,
which read the bytes or say why not, so the mixer accepts and mixes exactly what it did with
the contract decode alone (``tests/sinks/test_chunk_wire.py``).
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from callrec.avro import codec
from callrec.avro.errors import ContractError
from callrec.avro.events import AudioChunk, Event, Leg

# The header and varint readers of the contract's skim, shared with call state (the same
# conservative rules: anything unusual is left to the contract decode).
from callrec.avro.skim import Unsure, read_header, read_int, read_long, zigzag_varint
from callrec.sinks.codecs import codec_named
from callrec.sinks.packets import (
    RTP_SEQ_MODULUS,
    RTP_TS_MODULUS,
    ChunkPackets,
    InMemoryPayloads,
    Row,
    Span,
    compact,
    span_ticks,
)

MEMORY = InMemoryPayloads()
_V = rb"([\x80-\xff]{0,8}[\x00-\x7f])"  # a varint of at most 9 bytes: its value fits an int64
_PACKET = re.compile(_V * 4 + rb"([\x00\x01])" + _V * 2)
"""A packet's fields before its payload: rtp_seq, rtp_timestamp, ssrc, payload_type, marker (a
boolean byte), arrival_time_us, then the payload's length."""
_RTP_PT = 128
Ints = npt.NDArray[np.int64]


class WireChunk(NamedTuple):
    """What the worker needs of an AudioChunk: whose it is, and its packets' summary."""

    call_key: str
    packets: ChunkPackets


def take_in(value: bytes, read: WireChunk | None = None) -> WireChunk | Event:
    """An AudioChunk as a ``WireChunk`` (its payloads in memory), any other event decoded;
    ``ContractError`` for bytes the contract refuses, as ``codec.decode``. ``read``: what
    ``read_chunks`` made of the value, if anything."""
    if read is not None:
        return read
    event = codec.decode(value)
    if isinstance(event, AudioChunk):
        return WireChunk(event.call_key, compact(event, MEMORY))
    return event


def audio_packets(
    records: Sequence[tuple[int, bytes]],
) -> Iterator[tuple[int, bytes, ChunkPackets]]:
    """Each AudioChunk among (offset, value) records read back (spilled, or re-read from Kafka),
    with its packets, in order; values the contract refuses were dead-lettered when the worker
    first took them in, and other events are not audio: both are passed over."""
    reads = read_chunks([value for _, value in records])
    for (offset, value), read in zip(records, reads, strict=True):
        try:
            chunk = take_in(value, read)
        except ContractError:
            continue
        if isinstance(chunk, WireChunk):
            yield offset, value, chunk.packets


def read_chunks(values: Sequence[bytes]) -> list[WireChunk | None]:
    """Each value's AudioChunk as ``compact`` would make it; None where the contract decode must
    read the value (not an AudioChunk of the current schema, or not one this reader is sure of)."""
    out: list[WireChunk | None] = [None] * len(values)
    tables: dict[tuple[tuple[int, ...], int, int], list[tuple[int, _Head]]] = {}
    audio = _audio_header()
    for i, value in enumerate(values):
        if value[:10] != audio:
            continue
        try:
            head = _head(value)
        except (Unsure, IndexError, UnicodeDecodeError):
            continue
        tables.setdefault((head.widths, head.length, head.packet_count), []).append((i, head))
    for (widths, length, count), members in tables.items():
        for (i, _), read in zip(members, _table(widths, length, count, values, members),
                                strict=True):
            out[i] = read
    return out


class _Head(NamedTuple):
    """An AudioChunk's fields but its packets, and where its packets are, of which layout."""

    call_key: str
    leg: Leg
    leg_id: str
    chunk_seq: int
    codec: str
    payload_type: int
    clock_rate: int
    at: int
    """Where the packets start in the value."""
    packet_count: int
    widths: tuple[int, ...]
    """The first packet's varints' widths (see _PACKET)."""
    length: int
    """The first packet's payload length."""


@lru_cache(maxsize=1)
def _audio_header() -> bytes:
    return codec.header(AudioChunk)


def _head(data: bytes) -> _Head:
    """The header fields, and the packets' layout (the first packet's): the rest of the value
    checked as if every packet had it."""
    size = len(data)
    pos = codec.HEADER_LEN
    header, pos = read_header(data, pos, size)
    _, _, _, call_key, leg, leg_id, chunk_seq, codec_name, payload_type, clock_rate = header
    count, at = read_long(data, pos)
    if count <= 0:
        raise Unsure  # no packets, or a block written with its size in bytes: rare
    first = _PACKET.match(data, at)
    if first is None:
        raise Unsure
    widths = tuple(len(g) for g in first.groups())
    length, _ = read_long(first.group(7), 0)
    if length < 0:
        raise Unsure
    pos = at + count * (first.end() - at + length)
    if pos >= size or data[pos] != 0:  # the array's end
        raise Unsure
    pos += 1
    for _ in range(4):  # packets_lost, packets_reordered, packets_duplicated, ssrc_changes
        _, pos = read_int(data, pos)
    if pos != size:
        raise Unsure
    return _Head(call_key, leg, sys.intern(leg_id), chunk_seq,
                 sys.intern(codec_name), payload_type, clock_rate, at, count, widths, length)


def _table(
    widths: tuple[int, ...], length: int, count: int, values: Sequence[bytes],
    members: list[tuple[int, _Head]],
) -> list[WireChunk | None]:
    """Chunks whose first packets have one layout, read as one table of all their packets."""
    width = sum(widths) + length
    block = count * width
    joined = b"".join([values[i][h.at:h.at + block] for i, h in members])
    rows = np.frombuffer(joined, np.uint8).reshape(-1, width)
    fields = rows[:, :width - length]
    mask, template, weights = _layout(widths, length)
    # A chunk is read only if every packet of it has the first one's layout: continuation bits
    # where it has them (the same varint widths), a 0/1 marker, the same payload length.
    regular = ((fields & mask) == template).all(axis=1).reshape(-1, count).all(axis=1)
    zigzag = (fields & 0x7F).astype(np.int64) @ weights
    values64: Ints = (zigzag >> 1) ^ -(zigzag & 1)
    seqs, stamps, ssrcs, types, arrivals = (c.reshape(-1, count) for c in values64.T)
    # RTP as the recorder writes it; anything else keeps the contract decode's values.
    regular &= ((seqs >= 0) & (seqs < RTP_SEQ_MODULUS) & (stamps >= 0) & (stamps < RTP_TS_MODULUS)
                & (ssrcs >= 0) & (ssrcs < RTP_TS_MODULUS) & (types >= 0) & (types < _RTP_PT)
                ).all(axis=1)
    ticks_of = [_ticks(h.codec, h.clock_rate, length, count) or 0 for _, h in members]
    spans = _spans(members, ticks_of, count, seqs, stamps, ssrcs, types) & regular
    anchors = _anchors(members, ticks_of, count, arrivals)
    payloads = rows[:, width - length:].tobytes()
    arrived = arrivals.tobytes()
    firsts = values64[::count, :3].tolist()
    out: list[WireChunk | None] = []
    for k, (_, h), whole, ticks, is_span in zip(itertools.count(), members, regular.tolist(),
                                                  ticks_of, spans.tolist()):
        if not whole:
            out.append(None)
            continue
        if is_span:
            seq, ts, ssrc = firsts[k]
            span: Span | None = Span(ssrc, seq, ts, count, length, ticks,
                                     arrived[8 * count * k:8 * count * (k + 1)], anchors[k])
            table: tuple[Row, ...] = ()
        else:
            span = None
            table = tuple(map(Row, *(c[k].tolist() for c in (seqs, stamps, ssrcs, types,
                                                              arrivals)), [length] * count))
        packets = ChunkPackets(h.leg, h.leg_id, h.chunk_seq, h.codec, h.payload_type,
                               h.clock_rate, span, table,
                               payloads[length * count * k:length * count * (k + 1)], MEMORY)
        out.append(WireChunk(h.call_key, packets))
    return out


def _spans(
    members: list[tuple[int, _Head]], ticks_of: list[int], count: int, seqs: Ints,
    stamps: Ints, ssrcs: Ints, types: Ints,
) -> npt.NDArray[np.bool_]:
    """``packets._span`` for each chunk of the table (``ticks_of``: each one's packet length
    in ticks if it can be a span, else 0): one source and payload type, sequence numbers and
    timestamps advancing by one packet each."""
    ticks = np.array(ticks_of, np.int64)[:, None]
    types_due = np.array([[h.payload_type] for _, h in members], np.int64)
    steps = np.arange(count, dtype=np.int64)
    same: npt.NDArray[np.bool_] = (
        (ticks[:, 0] > 0)
        & (ssrcs == ssrcs[:, :1]).all(axis=1)
        & (types == types_due).all(axis=1)
        & (seqs == (seqs[:, :1] + steps) % RTP_SEQ_MODULUS).all(axis=1)
        & (stamps == (stamps[:, :1] + steps * ticks) % RTP_TS_MODULUS).all(axis=1)
    )
    return same


def _anchors(
    members: list[tuple[int, _Head]], ticks_of: list[int], count: int, arrivals: Ints
) -> list[int]:
    """Each span's anchor (``Span.anchor_us``): min of arrival - i * packet length."""
    step_us = np.array([t * 1_000_000 // max(1, h.clock_rate)
                        for t, (_, h) in zip(ticks_of, members, strict=True)], np.int64)[:, None]
    anchors: list[int] = (arrivals - np.arange(count) * step_us).min(axis=1).tolist()
    return anchors


@lru_cache(maxsize=256)
def _ticks(codec_name: str, clock: int, length: int, count: int) -> int | None:
    return span_ticks(codec_named(codec_name), clock, length, count)


@lru_cache(maxsize=64)
def _layout(widths: tuple[int, ...], length: int) -> tuple[
    npt.NDArray[np.uint8], npt.NDArray[np.uint8], Ints
]:
    """For a packet's varint widths: the bits every row must have (the continuation bits of its
    varints, a marker of 0 or 1, the payload length's bytes whole), and each byte's place
    value in the field it belongs to (seq, ts, ssrc, payload type, arrival)."""
    head = sum(widths)
    mask = np.full(head, 0x80, np.uint8)
    template = np.full(head, 0x80, np.uint8)
    weights = np.zeros((head, 5), np.int64)
    at = column = 0
    for field, width in enumerate(widths):
        template[at + width - 1] = 0  # a varint's last byte
        if field == 4:  # the marker
            mask[at] = 0xFE
        elif field == 6:  # the payload length
            mask[at:at + width] = 0xFF
            template[at:at + width] = np.frombuffer(zigzag_varint(length), np.uint8)
        else:
            weights[at:at + width, column] = [1 << (7 * k) for k in range(width)]
            column += 1
        at += width
    return mask, template, weights
