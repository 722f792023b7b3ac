"""SDP for a receive-only recorder: the offer CUCM answers, and reading the peer's side.

CUCM sends delayed-offer INVITEs, so the recorder offers (in the 200 OK) every codec it can
store and CUCM picks one in the ACK. A peer that offers in the INVITE gets an answer with the
codec chosen from its list. The recorder never sends media, so it is always ``recvonly``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callrec.producers.errors import BadSdp, NoCommonCodec


@dataclass(frozen=True)
class Codec:
    name: str
    payload_type: int
    clock_rate: int


PCMU = Codec("PCMU", 0, 8000)
PCMA = Codec("PCMA", 8, 8000)
# RFC 3551 4.5.2: G.722 is sampled at 16 kHz but its RTP clock rate is 8000 for historic reasons.
G722 = Codec("G722", 9, 8000)
G729 = Codec("G729", 18, 8000)
OFFERED_CODECS: tuple[Codec, ...] = (PCMU, PCMA, G722, G729)
TELEPHONE_EVENT_PT = 101
COMFORT_NOISE_PT = 13
_STATIC = {c.payload_type: c for c in OFFERED_CODECS}
_BY_NAME = {c.name: c for c in OFFERED_CODECS}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass(frozen=True)
class RemoteMedia:
    """The peer's audio stream as its SDP describes it."""

    address: str
    port: int
    direction: str
    payload_types: tuple[int, ...]
    rtpmap: dict[int, tuple[str, int]]

    @property
    def on_hold(self) -> bool:
        """No audio will flow: RFC 3264 8.4 (inactive / recvonly) or the RFC 2543 0.0.0.0 hold.

        ``sendonly`` is NOT hold here: it is what CUCM always answers a recording offer with.
        """
        return (
            self.direction in ("inactive", "recvonly")
            or self.address == "0.0.0.0"
            or self.port == 0
        )

    @property
    def rtp_addr(self) -> str:
        return f"{self.address}:{self.port}"

    def telephone_event_pt(self) -> int | None:
        for pt in self.payload_types:
            name = self.rtpmap.get(pt, ("", 0))[0]
            if name.lower() == "telephone-event":
                return pt
        return None

    def codec(self) -> Codec:
        """The first audio codec of the peer's list the recorder takes (its preference order)."""
        for pt in self.payload_types:
            mapped = self.rtpmap.get(pt)
            if mapped is not None:
                known = _BY_NAME.get(mapped[0].upper())
                if known is not None:
                    return Codec(known.name, pt, mapped[1])
            elif pt in _STATIC:
                return _STATIC[pt]
        raise NoCommonCodec(f"no codec of {list(self.payload_types)} is PCMU, PCMA, G722 or G729")


@dataclass
class _MediaDraft:
    port: int
    payload_types: tuple[int, ...]
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)
    address: str | None = None
    direction: str | None = None


def parse_sdp(body: str) -> RemoteMedia:
    """The first audio stream of an SDP body; BadSdp when there is none or it is garbled."""
    session_addr: str | None = None
    session_dir = "sendrecv"
    media: _MediaDraft | None = None
    in_session = True
    for raw in body.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:].strip()
        if kind == "m":
            if media is not None:
                break  # only the first audio stream matters to a one-stream recorder leg
            in_session = False
            media = _parse_m_line(value)
        elif kind == "c":
            fields = value.split()
            if len(fields) < 3:
                raise BadSdp(f"bad c= line {value!r}")
            addr = fields[2].split("/")[0]
            if in_session:
                session_addr = addr
            elif media is not None:
                media.address = addr
        elif kind == "a":
            if value in DIRECTIONS:
                if in_session:
                    session_dir = value
                elif media is not None:
                    media.direction = value
            elif value.startswith("rtpmap:") and media is not None:
                _add_rtpmap(media.rtpmap, value)
    if media is None:
        raise BadSdp("no audio m= line")
    address = media.address or session_addr
    if address is None:
        raise BadSdp("no c= address")
    return RemoteMedia(
        address=address,
        port=media.port,
        direction=media.direction or session_dir,
        payload_types=media.payload_types,
        rtpmap=media.rtpmap,
    )


def _parse_m_line(value: str) -> _MediaDraft | None:
    fields = value.split()
    if len(fields) < 4 or fields[0] != "audio":
        return None
    try:
        port = int(fields[1].split("/")[0])
        pts = tuple(int(f) for f in fields[3:])
    except ValueError as e:
        raise BadSdp(f"bad m= line {value!r}") from e
    if not 0 <= port <= 65535 or any(not 0 <= pt <= 127 for pt in pts):
        raise BadSdp(f"bad m= line {value!r}")
    return _MediaDraft(port, pts)


def _add_rtpmap(rtpmap: dict[int, tuple[str, int]], value: str) -> None:
    pt_text, _, encoding = value[len("rtpmap:") :].partition(" ")
    name, _, rate = encoding.strip().partition("/")
    try:
        rtpmap[int(pt_text)] = (name, int(rate.partition("/")[0]))
    except ValueError as e:
        raise BadSdp(f"bad rtpmap {value!r}") from e


def _header(session_id: int, version: int, local_ip: str) -> list[str]:
    return [
        "v=0",
        f"o=callrec {session_id} {version} IN IP4 {local_ip}",
        "s=callrec",
        f"c=IN IP4 {local_ip}",
        "t=0 0",
    ]


def build_offer(local_ip: str, port: int, session_id: int, version: int = 1) -> str:
    """The recorder's offer for the 200 OK of a delayed-offer INVITE."""
    pts = " ".join(str(c.payload_type) for c in OFFERED_CODECS)
    lines = [*_header(session_id, version, local_ip), f"m=audio {port} RTP/AVP {pts} 101"]
    lines += [f"a=rtpmap:{c.payload_type} {c.name}/{c.clock_rate}" for c in OFFERED_CODECS]
    lines += [
        "a=fmtp:18 annexb=no",
        f"a=rtpmap:{TELEPHONE_EVENT_PT} telephone-event/8000",
        f"a=fmtp:{TELEPHONE_EVENT_PT} 0-16",
        "a=recvonly",
    ]
    return "\r\n".join(lines) + "\r\n"


def build_answer(
    offer: RemoteMedia, local_ip: str, port: int, session_id: int, version: int = 1
) -> str:
    """Answer a peer's offer with one codec (+ its telephone-event), receive only."""
    codec = offer.codec()
    te = offer.telephone_event_pt()
    pts = f"{codec.payload_type}" + (f" {te}" if te is not None else "")
    direction = "inactive" if offer.direction in ("inactive", "recvonly") else "recvonly"
    lines = [*_header(session_id, version, local_ip), f"m=audio {port} RTP/AVP {pts}"]
    lines.append(f"a=rtpmap:{codec.payload_type} {codec.name}/{codec.clock_rate}")
    if te is not None:
        lines.append(f"a=rtpmap:{te} telephone-event/8000")
    lines.append(f"a={direction}")
    return "\r\n".join(lines) + "\r\n"
