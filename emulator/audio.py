"""The audio a CUCM leg streams: the A-law payload of sipp's own G.711 pcap, looped.

A phone streams RTP for the whole call. sipp's ``play_pcap_audio`` replays the 7.08 s pcap once and
then sends nothing, so a longer call went silent and ended MEDIA_TIMEOUT. sipp's ``rtp_stream``
action instead sends a raw payload file in 20 ms packets (160 bytes of PCMA) with running sequence
numbers and timestamps, from the leg's media socket, looping it until the leg ends. The file is the
pcap's payload bytes in order, so what a recorder receives is known to the byte.
"""

from __future__ import annotations

import struct
from pathlib import Path

G711A_PCAP = Path("/usr/share/sip-tester/g711a.pcap")
"""Shipped with the Debian package sip-tester."""
PACKET_BYTES = 160
"""sipp's rtp_stream packet for payload type 8: 20 ms of 8 kHz A-law."""


def pcap_rtp_payloads(path: Path) -> list[bytes]:
    """RTP payloads of an Ethernet/IPv4/UDP pcap, in file order."""
    data = path.read_bytes()
    pos, payloads = 24, []
    while pos + 16 <= len(data):
        incl = struct.unpack_from("<I", data, pos + 8)[0]
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        ip = frame[14:]
        udp = ip[(ip[0] & 0x0F) * 4 :]
        rtp = udp[8:]
        payloads.append(rtp[12 + 4 * (rtp[0] & 0x0F) :])
    return payloads


def loop_payload() -> bytes:
    """The bytes a leg streams, over and over: the pcap's A-law audio (7.08 s)."""
    return b"".join(pcap_rtp_payloads(G711A_PCAP))


def write_loop(directory: Path) -> Path:
    """The payload file for sipp's rtp_stream, written once per emulator."""
    path = directory / "g711a-loop.alaw"
    path.write_bytes(loop_payload())
    return path


def looped(length: int) -> bytes:
    """The first ``length`` bytes a leg streams (for byte-exact checks of a recording)."""
    payload = loop_payload()
    return (payload * (length // len(payload) + 1))[:length]
