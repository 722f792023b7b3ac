"""AudioChunk bytes -> the facts call state folds from a chunk, without building its packets.

Call state needs of a chunk its header fields, how many packets it carries and how many payload
bytes. The contract decode (``codec.decode``: fastavro, then pydantic) builds ten packet models
per chunk only for them to be counted, and was most of what the call-state worker spent per
chunk (bench/streams_fold.py). ``skim_chunk`` walks the Avro body once instead: the header
fields are read, each packet's fixed fields are skipped by one regular expression (C speed) and
its payload by its length.

It reads only the current AudioChunk schema (``codec`` routes by fingerprint) and gives up,
returning None, at anything it is not sure of: an unusual varint, a string that is not UTF-8,
an event id that is not a canonical UUID, a time outside ``datetime``'s range, truncated or
trailing bytes. The caller then runs the contract decode, which reads the bytes or says why not,
so the skim never accepts what the contract decode refuses (``tests/avro/test_skim.py``).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple

from callrec.avro.events import Leg

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LEGS = tuple(Leg)  # the schema's enum symbols, in order
_VARINT = rb"[\x80-\xff]{0,9}+[\x00-\x7f]"
"""A varint of at most 10 bytes. Possessive (``{0,9}+``): its last byte is the only one under
0x80, so giving back a byte can never lead to a match, and the engine then keeps no state to
give it back (about 40% of the time of a chunk's packets)."""
_FIXED = _VARINT * 4 + rb"[\x00\x01]" + _VARINT
"""A packet's fields before its payload: rtp_seq, rtp_timestamp, ssrc, payload_type, marker (a
boolean byte), arrival_time_us."""
_PACKET = re.compile(_FIXED + b"(" + _VARINT + b")")  # and the payload's length, captured
_HEX = "[0-9a-fA-F]"
UUID_TEXT = re.compile(f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}")
_EVENT_ID = re.compile(b"\x48(" + UUID_TEXT.pattern.encode() + b")")
"""An event id as the producers write it: the varint of its length (36), then a canonical UUID
(one match instead of a string read and a match of its text; anything else takes that way)."""
# Well inside the years datetime can hold (1-9999): fastavro's own conversion decides the edges.
MIN_TIMESTAMP_US = -62_000_000_000_000_000
MAX_TIMESTAMP_US = 253_000_000_000_000_000


def zigzag_varint(value: int) -> bytes:
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_LENGTHS = {zigzag_varint(n): n for n in range(8192)}
"""Payload lengths as the varints they are written as (one or two bytes: up to 8191)."""


class SkimmedChunk(NamedTuple):
    """An AudioChunk as call state folds it: every field but ``packets``, which is summed up.

    A NamedTuple, not a model: building one costs a tuple, and nothing here needs validating
    (the Avro schema already typed every field)."""

    event_id_text: str
    event_time_us: int
    producer_id: str
    call_key: str
    leg: Leg
    leg_id: str
    chunk_seq: int
    codec: str
    payload_type: int
    clock_rate: int
    packet_count: int
    """``len(packets)``"""
    payload_bytes: int
    """``sum(len(p.payload) for p in packets)``"""
    packets_lost: int
    packets_reordered: int
    packets_duplicated: int
    ssrc_changes: int

    @property
    def event_id(self) -> uuid.UUID:
        return uuid.UUID(self.event_id_text)

    @property
    def event_time(self) -> datetime:
        return EPOCH + timedelta(microseconds=self.event_time_us)

    @property
    def kafka_key(self) -> bytes:
        return self.call_key.encode()


class Unsure(Exception):
    """Bytes the skim leaves to the contract decode."""


def skim_chunk(data: bytes, start: int) -> SkimmedChunk | None:
    """Read the AudioChunk body at ``data[start:]``; None when the contract decode must."""
    try:
        return _skim(data, start)
    except (Unsure, IndexError, UnicodeDecodeError):
        return None


Header = tuple[str, int, str, str, Leg, str, int, str, int, int]
"""event_id, event_time_us, producer_id, call_key, leg, leg_id, chunk_seq, codec, payload_type,
clock_rate: an AudioChunk's fields before its packets, in the schema's order."""
_INT32 = 1 << 31


def read_header(data: bytes, pos: int, size: int) -> tuple[Header, int]:
    """An AudioChunk's fields before its packets (the skim's and the mixer's reader share it),
    and where its packets start; Unsure at anything the contract decode should judge."""
    written = _EVENT_ID.match(data, pos)
    if written is not None:
        event_id, pos = written.group(1).decode(), written.end()
    else:
        event_id, pos = read_string(data, pos, size)
        if UUID_TEXT.fullmatch(event_id) is None:
            raise Unsure
    event_time_us, pos = read_long(data, pos)
    if not MIN_TIMESTAMP_US <= event_time_us <= MAX_TIMESTAMP_US:
        raise Unsure
    (producer_id, call_key, leg, leg_id), pos = _whose(data, pos, size)
    chunk_seq, pos = read_long(data, pos)
    codec, pos = read_string(data, pos, size)
    payload_type, pos = read_long(data, pos)
    clock_rate, pos = read_long(data, pos)
    if not (-_INT32 <= payload_type < _INT32 and -_INT32 <= clock_rate < _INT32):
        raise Unsure  # Avro ints (as read_int, inline: this runs for every chunk)
    return (event_id, event_time_us, producer_id, call_key, leg, leg_id, chunk_seq,
            codec, payload_type, clock_rate), pos


Whose = tuple[str, str, Leg, str]
"""producer_id, call_key, leg, leg_id: whose chunk it is."""
_SEEN: dict[bytes, Whose] = {}
"""The bytes of a leg's ``Whose`` -> what they read as: a leg writes the same ones in every
chunk, so most chunks are read by one lookup instead of three strings and an enum. Bounded
(~400 bytes a leg): past 20,000 legs it starts again."""
_SEEN_MAX = 20_000


def _whose(data: bytes, pos: int, size: int) -> tuple[Whose, int]:
    """The chunk's ``Whose`` at ``pos``, and the position after it."""
    # Where they end if each length is one byte (strings under 64 bytes, the usual case).
    end = pos
    for gap in (0, 0, 1):  # producer_id, call_key, then leg_id after the leg's one byte
        end += gap
        length = data[end] if end < size else 1
        if length >= 0x80 or length & 1:
            end = size + 1  # not so: no lookup
            break
        end += 1 + (length >> 1)
    known = _SEEN.get(data[pos:end]) if end <= size else None
    if known is not None:
        return known, end
    start = pos
    producer_id, pos = read_string(data, pos, size)
    call_key, pos = read_string(data, pos, size)
    leg_index, pos = read_long(data, pos)
    if not 0 <= leg_index < len(LEGS):
        raise Unsure
    leg_id, pos = read_string(data, pos, size)
    whose = (producer_id, call_key, LEGS[leg_index], leg_id)
    if pos == end:
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN[data[start:end]] = whose
    return whose, pos


def _skim(data: bytes, pos: int) -> SkimmedChunk:
    size = len(data)
    header, pos = read_header(data, pos, size)
    packet_count = payload_bytes = 0
    match = _PACKET.match
    while True:
        items, pos = read_long(data, pos)
        if items == 0:
            break
        if items < 0:  # a block written with its size in bytes (Avro spec, "Arrays")
            items = -items
            _, pos = read_long(data, pos)
        left = items
        while left:
            packet = match(data, pos)
            if packet is None:
                raise Unsure
            length = _LENGTHS.get(packet.group(1))
            if length is None:
                raise Unsure
            pos = packet.end() + length
            payload_bytes += length
            left -= 1
            if left and left * length <= size - pos:
                # A codec's packets all have one size: the rest of the block in one match.
                rest = _same_size(packet.group(1), length, left).match(data, pos)
                if rest is not None:
                    pos = rest.end()
                    payload_bytes += length * left
                    left = 0
        packet_count += items
    if pos > size:
        raise Unsure
    packets_lost, pos = read_long(data, pos)
    packets_reordered, pos = read_long(data, pos)
    packets_duplicated, pos = read_long(data, pos)
    ssrc_changes, pos = read_long(data, pos)
    if pos != size:
        raise Unsure
    return SkimmedChunk(
        *header, packet_count, payload_bytes, packets_lost, packets_reordered,
        packets_duplicated, ssrc_changes,
    )


@lru_cache(maxsize=256)
def _same_size(length_varint: bytes, length: int, count: int) -> re.Pattern[bytes]:
    """``count`` packets in a row whose payloads are ``length`` bytes, each as ``_PACKET`` reads
    one (the varint of their length written as ``length_varint``, then the payload itself)."""
    one = b"(?:" + _FIXED + re.escape(length_varint) + b".{%d})" % length
    return re.compile(one + b"{%d}" % count, re.DOTALL)


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """An Avro int or long (zigzag varint) at ``pos``, and the position after it."""
    byte = data[pos]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    n = byte & 0x7F
    shift = 7
    while True:
        pos += 1
        byte = data[pos]
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift > 63:
            raise Unsure
    if n >> 64:
        raise Unsure  # wider than a long: fastavro's C reader would wrap it
    return (n >> 1) ^ -(n & 1), pos + 1


def read_int(data: bytes, pos: int) -> tuple[int, int]:
    """An Avro int: a long within 32 bits (anything wider is left to the contract decode)."""
    value, pos = read_long(data, pos)
    if not -_INT32 <= value < _INT32:
        raise Unsure
    return value, pos


def read_string(data: bytes, pos: int, size: int) -> tuple[str, int]:
    """An Avro string at ``pos`` that ends before ``size``, and the position after it."""
    length = data[pos]
    if length < 0x80 and not length & 1:  # a length of one byte, not negative: inline
        pos += 1
        end = pos + (length >> 1)
    else:
        length, pos = read_long(data, pos)
        if length < 0:
            raise Unsure
        end = pos + length
    if end > size:
        raise Unsure
    return data[pos:end].decode(), end
