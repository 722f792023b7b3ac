"""Whose RTP a leg records: the sender its SDP names, one SSRC per SDP (pure: no sockets).

A leg's UDP port is open to the world, so without this anyone who finds it can write into a
recording. The rule, as SBCs apply it:
- the sender must be the host of the SDP's ``c=`` address; the first RTP packet from that host
  latches its address and port (NAT, or a phone that sends from another port than it receives
  on, is why the port may differ from the SDP's), and from then on only that address and port;
- the first packet's SSRC is latched too: another SSRC from the latched sender is dropped until a
  new SDP (re-INVITE, UPDATE, the ACK of a delayed offer) allows one;
- a datagram over the size cap is dropped before anything else (no codec we record needs it);
- a new SDP with another address or port latches afresh; the same address keeps the sender.
An SDP that names no usable address (none yet, a host name) latches on the first RTP sender.
Datagrams that are not RTP are let through from the right sender without latching anything
(``parse_rtp`` counts them); from anyone else they are strangers.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, replace
from enum import StrEnum

from callrec.producers.sdp import RemoteMedia

Address = tuple[str, int]
RTP_HEADER_BYTES = 12


class Drop(StrEnum):
    """Why a datagram was not recorded: counted per leg and per recorder under these names."""

    OVERSIZE = "oversize"
    STRANGER = "stranger"
    SSRC = "ssrc"


@dataclass(frozen=True, slots=True)
class Latch:
    """What a leg accepts now; replaced (not changed) when a packet or an SDP moves it."""

    media: RemoteMedia | None  # the SDP this latch was set for (a new SDP is a new value)
    host: str | None  # the SDP's address as an IP literal; None: latch on the first sender
    source: Address | None = None
    ssrc: int | None = None


def latch_for(media: RemoteMedia | None, previous: Latch | None = None) -> Latch:
    """The latch of a new SDP: the sender is kept if the SDP still names the same address."""
    host: str | None = None
    if media is not None:
        try:
            host = str(ipaddress.ip_address(media.address))
        except ValueError:
            host = None
    if (
        previous is not None
        and previous.media is not None
        and media is not None
        and previous.media.rtp_addr == media.rtp_addr
    ):
        return Latch(media, host, previous.source)
    return Latch(media, host)


def _ssrc(datagram: bytes) -> int | None:
    """The SSRC of an RTP packet (RFC 3550 5.1), None for anything else (RTCP-mux included)."""
    if len(datagram) < RTP_HEADER_BYTES or datagram[0] >> 6 != 2:
        return None
    if 72 <= datagram[1] & 0x7F <= 76:  # RFC 5761 4: RTCP on the RTP port
        return None
    return int.from_bytes(datagram[8:12], "big")


def judge(
    latch: Latch,
    media: RemoteMedia | None,
    source: Address,
    datagram: bytes,
    max_bytes: int,
) -> tuple[Latch, Drop | None]:
    """Record this datagram (None) or drop it (why); returns the latch as it now is (the same
    object when nothing moved, which is nearly always)."""
    if len(datagram) > max_bytes:
        return latch, Drop.OVERSIZE
    if media is not latch.media:
        latch = latch_for(media, latch)
    sender = (source[0], source[1])
    ssrc = _ssrc(datagram)
    if latch.source is None:
        if latch.host is not None and sender[0] != latch.host:
            return latch, Drop.STRANGER
        if ssrc is None:
            return latch, None
        return replace(latch, source=sender, ssrc=ssrc), None
    if sender != latch.source:
        return latch, Drop.STRANGER
    if ssrc is None or ssrc == latch.ssrc:
        return latch, None
    if latch.ssrc is None:
        return replace(latch, ssrc=ssrc), None
    return latch, Drop.SSRC


class RtpGate:
    """One leg's latch and drop counts; ``totals`` is the recorder's, shared by all its legs."""

    __slots__ = ("dropped", "latch", "max_bytes", "totals")

    def __init__(self, max_bytes: int, totals: Counter[str]) -> None:
        self.max_bytes = max_bytes
        self.totals = totals
        self.latch = latch_for(None)
        self.dropped: Counter[str] = Counter()

    def settled(self, media: RemoteMedia | None, source: Address, size: int, ssrc: int) -> bool:
        """True: a parsed RTP packet of ``ssrc`` from the latched sender, with the latched SSRC,
        under the same SDP and within the size cap, which ``admit`` would record and latch nothing
        for. Nearly every packet is one: the recorder asks this first and ``admit`` only if not."""
        latch = self.latch
        return (
            media is latch.media
            and source == latch.source
            and ssrc == latch.ssrc
            and size <= self.max_bytes
        )

    def admit(self, media: RemoteMedia | None, source: Address, datagram: bytes) -> bool:
        """True: record it. False: it was dropped and counted."""
        self.latch, drop = judge(self.latch, media, source, datagram, self.max_bytes)
        if drop is None:
            return True
        self.dropped[drop] += 1
        self.totals[drop] += 1
        return False
