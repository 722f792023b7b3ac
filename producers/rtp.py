"""RTP fixed-header parsing (RFC 3550 5.1), just enough to batch packets without decoding them."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from callrec.producers.errors import BadRtp

_FIXED = struct.Struct("!BBHII")
FIXED_HEADER_LEN = _FIXED.size


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One received packet: header fields the mixer needs, the payload as sent, arrival time."""

    seq: int
    timestamp: int
    ssrc: int
    payload_type: int
    marker: bool
    arrival_time_us: int
    payload: bytes


def parse_rtp(datagram: bytes, arrival_time_us: int) -> RtpPacket:
    """Header fields and payload (after CSRCs and extension, padding removed); BadRtp if not RTP."""
    if len(datagram) < FIXED_HEADER_LEN:
        raise BadRtp(f"{len(datagram)} bytes is shorter than an RTP header")
    first, second, seq, timestamp, ssrc = _FIXED.unpack_from(datagram)
    if first >> 6 != 2:
        raise BadRtp(f"RTP version {first >> 6}, not 2")
    start = FIXED_HEADER_LEN + 4 * (first & 0x0F)
    end = len(datagram)
    if first & 0x10:  # header extension: 16-bit profile, 16-bit length in 32-bit words
        if end < start + 4:
            raise BadRtp("truncated header extension")
        start += 4 + 4 * int.from_bytes(datagram[start + 2 : start + 4], "big")
    if first & 0x20:  # padding: the last octet counts the padding octets, itself included
        if end == 0 or datagram[-1] == 0:
            raise BadRtp("bad padding")
        end -= datagram[-1]
    if start > end:
        raise BadRtp("header longer than the packet")
    payload_type = second & 0x7F
    if 72 <= payload_type <= 76:
        # RFC 5761 4: these are RTCP packet types (SR/RR...) muxed on the RTP port.
        raise BadRtp(f"RTCP packet type {second} on the RTP port")
    return RtpPacket(
        seq,
        timestamp,
        ssrc,
        payload_type,
        bool(second & 0x80),
        arrival_time_us,
        datagram[start:end],
    )


def build_rtp(
    seq: int, timestamp: int, ssrc: int, payload_type: int, payload: bytes, marker: bool = False
) -> bytes:
    """A minimal RTP packet (tests and the load generator send these)."""
    return (
        _FIXED.pack(0x80, (0x80 if marker else 0) | payload_type, seq & 0xFFFF, timestamp, ssrc)
        + payload
    )
