"""The recorder benches' own SIP side: a minimal UAC that opens CUCM-style two-leg calls
(delayed-offer INVITEs with the x-refci keys, as CUCM's built-in bridge sends them) on one
socket, transaction by transaction, so hundreds of calls are set up in seconds without sipp."""

from __future__ import annotations

import re
import socket
import time
import uuid


def sip_request(method: str, port: int, call_id: str, leg: str, refci: str, cseq: int,
                to_tag: str = "", body: str = "", local_port: int = 0) -> bytes:  # fmt: skip
    to = "<sip:7878@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"{method} sip:7878@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};rport;branch=z9hG4bK{uuid.uuid4().hex}\r\n"
        f"From: <sip:1001@cucm;{leg};x-refci={refci};x-nearendclusterid=BENCH;"
        f"x-nearendaddr=1001;x-farendaddr=1000>;tag=t{call_id}\r\n"
        f"To: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
        f"Contact: <sip:cucm@127.0.0.1:{local_port}>\r\nMax-Forwards: 70\r\n"
    )
    if body:
        return (head + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
                + body).encode()  # fmt: skip
    return (head + "Content-Length: 0\r\n\r\n").encode()


def answer_sdp(rtp_port: int) -> str:
    return (
        "v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n"
    )


class Uac:
    """Just enough of CUCM's side to open and close legs; the bench's own SIP client."""

    def __init__(self, recorder_port: int) -> None:
        self.recorder_port = recorder_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]

    def _transact(self, message: bytes, expect: str) -> str:
        for _ in range(5):
            self.sock.sendto(message, ("127.0.0.1", self.recorder_port))
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                try:
                    reply = self.sock.recv(65535).decode()
                except TimeoutError:
                    break
                if reply.startswith(f"SIP/2.0 {expect}"):
                    return reply
                if not reply.startswith("SIP/2.0 1"):
                    raise RuntimeError(reply.splitlines()[0])
        raise RuntimeError(f"no {expect} from the recorder")

    def open_leg(self, call_id: str, leg: str, refci: str, sender_port: int) -> tuple[int, str]:
        reply = self._transact(
            sip_request("INVITE", self.recorder_port, call_id, leg, refci, 1,
                        local_port=self.port), "200")  # fmt: skip
        to_tag = re.search(r"^To:.*;tag=([^;\r\n]+)", reply, re.M | re.I).group(1)  # type: ignore[union-attr]
        rtp_port = int(re.search(r"^m=audio (\d+)", reply, re.M).group(1))  # type: ignore[union-attr]
        ack = sip_request("ACK", self.recorder_port, call_id, leg, refci, 1, to_tag,
                          answer_sdp(sender_port), self.port)  # fmt: skip
        self.sock.sendto(ack, ("127.0.0.1", self.recorder_port))
        return rtp_port, to_tag

    def close_leg(self, call_id: str, leg: str, refci: str, to_tag: str) -> None:
        self._transact(
            sip_request("BYE", self.recorder_port, call_id, leg, refci, 2, to_tag,
                        local_port=self.port), "200")  # fmt: skip


def open_calls(uac: Uac, calls: int, sender_port: int) -> list[tuple[str, str, str, str, int]]:
    """``calls`` two-leg calls: (call_id, leg, refci, to_tag, rtp_port) per leg."""
    opened = []
    for n in range(calls):
        refci = str(10**7 + n)
        for leg in ("x-nearend", "x-farend"):
            call_id = f"{uuid.uuid4().hex}-{leg}"
            rtp_port, to_tag = uac.open_leg(call_id, leg, refci, sender_port)
            opened.append((call_id, leg, refci, to_tag, rtp_port))
    return opened
