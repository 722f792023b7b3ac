"""AudioChunk bytes straight from a closed chunk, without building pydantic models or dicts.

AudioChunk is the recorder's hottest event (five per leg per second, ~10 packets each). Building
its pydantic model cost more CPU than receiving the RTP; after that, fastavro writing it from a
dict was still ~40% of the recorder's event loop (py-spy, 250 calls; it dispatches on the schema
per field of every packet). So the Avro binary encoding (zig-zag varints, length-prefixed
strings and bytes, one array block) is written here by hand, with the parts that repeat cached:
the leg's strings, the codec's fields, small varints. ``_FIELDS``/``_PACKET_FIELDS`` are checked
against the contract's schema at import, so a changed schema fails loudly instead of encoding
wrongly; tests/producers/test_chunk_encoding.py proves the bytes are fastavro's, byte for byte,
and decode to the model.
"""

from __future__ import annotations

import os
from functools import lru_cache

from callrec.avro import codec
from callrec.avro.events import AudioChunk
from callrec.avro.topics import TOPIC_OF
from callrec.producers.chunker import ClosedChunk
from callrec.producers.leg import LegState
from callrec.producers.sdp import Codec

AUDIO_TOPIC = TOPIC_OF[AudioChunk].name
_SCHEMA = codec.load_schema(codec.SCHEMA_DIR / "AudioChunk.avsc")
_HEADER = codec.MARKER + codec.schema_fingerprint(_SCHEMA)
_FIELDS = ["event_id", "event_time", "producer_id", "call_key", "leg", "leg_id", "chunk_seq",
           "codec", "payload_type", "clock_rate", "packets", "packets_lost", "packets_reordered",
           "packets_duplicated", "ssrc_changes"]  # fmt: skip
_PACKET_FIELDS = ["rtp_seq", "rtp_timestamp", "ssrc", "payload_type", "marker",
                  "arrival_time_us", "payload"]  # fmt: skip
_LEGS = _SCHEMA["fields"][4]["type"]["symbols"]
if (
    [f["name"] for f in _SCHEMA["fields"]] != _FIELDS
    or [f["name"] for f in _SCHEMA["fields"][10]["type"]["items"]["fields"]] != _PACKET_FIELDS
):
    raise RuntimeError("AudioChunk.avsc changed: update chunk_encoding.py's hand encoder")


def _varint(n: int) -> bytes:
    """Avro's int/long: zig-zag, then 7 bits a byte, least significant first."""
    return _groups((n << 1) ^ (n >> 63))


def _groups(z: int) -> bytes:
    """An unsigned value 7 bits a byte, least significant first, the high bit set on all but the
    last."""
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_SMALL = [_varint(n) for n in range(1 << 16)]
"""Varints of 0..65535: every RTP sequence number, payload type and payload length."""
_LAST14 = [_groups(z) for z in range(1 << 14)]
_FIRST14 = [bytes(((z & 0x7F) | 0x80, (z >> 7) | 0x80)) for z in range(1 << 14)]
"""The two 7-bit groups of a value's low 14 bits, when more groups follow."""
_HIGH: dict[int, bytes] = {}
"""The groups above the low 14 bits, by value. RTP timestamps and arrival times of a second
share few of them (an arrival time's change every 8 ms; a leg's timestamp every second)."""
_HIGH_ENTRIES = 16384


def _long(n: int) -> bytes:
    """``_varint`` for the per-packet longs (timestamp, SSRC, arrival time) in ~1/3 of its time:
    two table lookups and a cached tail instead of a loop over 5-8 groups (the loop was most of
    a chunk's encoding)."""
    if n < 0:
        return _varint(n)
    z = n << 1
    if z < 0x4000:
        return _LAST14[z]
    rest = z >> 14
    high = _HIGH.get(rest)
    if high is None:
        if len(_HIGH) >= _HIGH_ENTRIES:
            _HIGH.clear()
        high = _HIGH[rest] = _groups(rest)
    return _FIRST14[z & 0x3FFF] + high


_IDS: list[str] = []
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _event_id() -> str:
    """A random UUID (version 4) as text, like ``str(uuid.uuid4())`` at a third of its cost:
    ``os.urandom`` once per 256 ids, no ``UUID`` object (``list.pop`` is atomic for threads)."""
    try:
        return _IDS.pop()
    except IndexError:
        h = os.urandom(16 * 256).hex()
        _IDS.extend(
            f"{h[i:i + 8]}-{h[i + 8:i + 12]}-4{h[i + 13:i + 16]}-{_VARIANT[h[i + 16]]}"
            f"{h[i + 17:i + 20]}-{h[i + 20:i + 32]}"
            for i in range(0, len(h), 32)
        )  # fmt: skip
        return _IDS.pop()


def _string(text: str) -> bytes:
    data = text.encode()
    return _varint(len(data)) + data


@lru_cache(maxsize=8192)
def _leg_fields(producer_id: str, call_key: str, leg: str, leg_id: str) -> bytes:
    """producer_id, call_key, leg (enum index) and leg_id: the same in every chunk of a leg."""
    return _string(producer_id) + _string(call_key) + _varint(_LEGS.index(leg)) + _string(leg_id)


@lru_cache(maxsize=64)
def _codec_fields(chunk_codec: Codec) -> bytes:
    return (_string(chunk_codec.name) + _varint(chunk_codec.payload_type)
            + _varint(chunk_codec.clock_rate))  # fmt: skip


def encode_chunk(leg: LegState, chunk: ClosedChunk) -> bytes:
    """The contract's AudioChunk encoding of one closed chunk of the leg."""
    return encode_chunk_as(_event_id(), leg, chunk)


def encode_chunk_as(event_id: str, leg: LegState, chunk: ClosedChunk) -> bytes:
    """``encode_chunk`` with the event id given (tests compare it with fastavro's bytes)."""
    small = _SMALL
    varint = _varint
    long = _long
    parts = [
        _HEADER,
        _string(event_id),
        long(chunk.closed_at_us),
        _leg_fields(leg.identity.recorder_id, leg.call_key, leg.opened.meta.leg.value, leg.leg_id),
        long(chunk.chunk_seq),
        _codec_fields(chunk.codec),
    ]
    append = parts.append
    packets = chunk.packets
    if packets:
        append(long(len(packets)))
        heads: dict[tuple[int, int, bool], bytes] = {}
        for seq, timestamp, ssrc, payload_type, marker, arrival_time_us, payload in packets:
            head = heads.get((ssrc, payload_type, marker))
            if head is None:  # ssrc, payload_type, marker: nearly always one per chunk
                head = long(ssrc) + small[payload_type] + (b"\x01" if marker else b"\x00")
                heads[ssrc, payload_type, marker] = head
            size = len(payload)
            append(small[seq] if 0 <= seq < 65536 else varint(seq))
            append(long(timestamp))
            append(head)
            append(long(arrival_time_us))
            append(small[size] if size < 65536 else varint(size))
            append(payload)
    append(b"\x00")  # the array's end (or an empty array)
    append(long(chunk.packets_lost))
    append(long(chunk.packets_reordered))
    append(long(chunk.packets_duplicated))
    append(long(chunk.ssrc_changes))
    return b"".join(parts)
