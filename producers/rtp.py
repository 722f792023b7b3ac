"""RTP fixed-header parsing (RFC 3550 5.1), just enough to batch packets without decoding them."""

from __future__ import annotations

import struct
from typing import NamedTuple

from callrec.producers.errors import BadRtp

_FIXED = struct.Struct("!BBHII")
FIXED_HEADER_LEN = _FIXED.size
_unpack_header = _FIXED.unpack_from


class RtpPacket(NamedTuple):
    """One received packet: header fields the mixer needs, the payload as sent, arrival time.

    A named tuple, not a frozen dataclass: one is built per packet (tens of thousands a second)
    and a frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost more than
    parsing the header."""

    seq: int
    timestamp: int
    ssrc: int
    payload_type: int
    marker: bool
    arrival_time_us: int
    payload: bytes


_new_packet = tuple.__new__  # RtpPacket(...) without its generated __new__'s extra call


def parse_rtp(datagram: bytes, arrival_time_us: int) -> RtpPacket:
    """Header fields and payload (after CSRCs and extension, padding removed); BadRtp if not RTP.

    A G.711 phone's packet (version 2, no padding, extension or CSRC: first octet 0x80) takes
    the first branch: one unpack, one slice, one tuple."""
    if len(datagram) < FIXED_HEADER_LEN:
        raise BadRtp(f"{len(datagram)} bytes is shorter than an RTP header")
    first, second, seq, timestamp, ssrc = _unpack_header(datagram)
    if first == 0x80:
        payload = datagram[FIXED_HEADER_LEN:]
    else:
        payload = _payload(datagram, first)
    payload_type = second & 0x7F
    if 72 <= payload_type <= 76:
        # RFC 5761 4: these are RTCP packet types (SR/RR...) muxed on the RTP port.
        raise BadRtp(f"RTCP packet type {second} on the RTP port")
    return _new_packet(
        RtpPacket,
        (seq, timestamp, ssrc, payload_type, second > 0x7F, arrival_time_us, payload),
    )


def _payload(datagram: bytes, first: int) -> bytes:
    """The payload of a packet with CSRCs, a header extension or padding (or not RTP at all)."""
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
    return datagram[start:end]


def build_rtp(
    seq: int, timestamp: int, ssrc: int, payload_type: int, payload: bytes, marker: bool = False
) -> bytes:
    """A minimal RTP packet (tests and the load generator send these)."""
    return (
        _FIXED.pack(0x80, (0x80 if marker else 0) | payload_type, seq & 0xFFFF, timestamp, ssrc)
        + payload
    )
