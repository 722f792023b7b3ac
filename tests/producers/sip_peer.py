"""A bare SIP UAC over UDP for edge tests: an INVITE with its own offer, ACK, BYE, and RTP sent
from a chosen address and port (sipp cannot send a second stream or a foreign SSRC)."""

from __future__ import annotations

import re
import socket
import uuid
from dataclasses import dataclass, field

from callrec.producers.rtp import build_rtp


@dataclass
class Dialog:
    """One dialog the peer opened: what the recorder's 200 OK said."""

    call_id: str
    from_tag: str
    to_tag: str
    rtp_port: int  # the recorder's port for this leg
    cseq: int = 1


@dataclass
class SipPeer:
    """Plays CUCM from ``host`` (bound on a free port) towards the recorder's SIP port."""

    recorder_port: int
    host: str = "127.0.0.1"
    sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.host, 0))
        self.sock.settimeout(5)

    def close(self) -> None:
        self.sock.close()

    def request(self, text: str) -> bytes:
        """Send a request; the final answer (provisional ones skipped)."""
        self.sock.sendto(text.encode(), ("127.0.0.1", self.recorder_port))
        while True:
            reply = self.sock.recv(65535)
            if not reply.startswith(b"SIP/2.0 1"):
                return reply

    def _head(self, method: str, call_id: str, from_tag: str, to_tag: str, cseq: int,
              from_params: str = "") -> str:  # fmt: skip
        port = self.sock.getsockname()[1]
        to = "<sip:7878@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
        return (
            f"{method} sip:7878@127.0.0.1:{self.recorder_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.host}:{port};rport;branch=z9hG4bK{uuid.uuid4().hex}\r\n"
            f"From: <sip:1001@cucm.example{from_params}>;tag={from_tag}\r\n"
            f"To: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:cucm@{self.host}:{port}>\r\nMax-Forwards: 70\r\n"
        )

    def invite(self, call_id: str, from_tag: str, refci: str, cluster: str,
               media_port: int, leg: str = "x-nearend") -> tuple[bytes, Dialog | None]:  # fmt: skip
        """An INVITE offering PCMA from ``host:media_port``; the answer and, on 200, the dialog."""
        sdp = (
            f"v=0\r\no=peer 1 1 IN IP4 {self.host}\r\ns=-\r\nc=IN IP4 {self.host}\r\nt=0 0\r\n"
            f"m=audio {media_port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendonly\r\n"
        )
        params = f";{leg};x-refci={refci};x-nearendclusterid={cluster};x-farendrefci=1"
        head = self._head("INVITE", call_id, from_tag, "", 1, params)
        reply = self.request(
            f"{head}Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
        )
        if not reply.startswith(b"SIP/2.0 200"):
            return reply, None
        to_tag = re.search(rb"\r\nTo:[^\r]*;tag=([^;\r]+)", reply, re.I)
        port = re.search(rb"\r\nm=audio (\d+)", reply)
        assert to_tag and port, reply
        dialog = Dialog(call_id, from_tag, to_tag.group(1).decode(), int(port.group(1)))
        ack = self._head("ACK", call_id, from_tag, dialog.to_tag, 1)
        self.sock.sendto(f"{ack}Content-Length: 0\r\n\r\n".encode(),
                         ("127.0.0.1", self.recorder_port))  # fmt: skip
        return reply, dialog

    def bye(self, dialog: Dialog) -> bytes:
        dialog.cseq += 1
        head = self._head("BYE", dialog.call_id, dialog.from_tag, dialog.to_tag, dialog.cseq)
        return self.request(f"{head}Content-Length: 0\r\n\r\n")


class RtpSender:
    """One RTP stream from a chosen address and port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, ssrc: int = 0x1234) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.ssrc = ssrc
        self.seq = 0

    def send(self, to_port: int, payload: bytes, ssrc: int | None = None) -> None:
        packet = build_rtp(self.seq, self.seq * 160, self.ssrc if ssrc is None else ssrc, 8,
                           payload)  # fmt: skip
        self.seq += 1
        self.sock.sendto(packet, ("127.0.0.1", to_port))

    def close(self) -> None:
        self.sock.close()
