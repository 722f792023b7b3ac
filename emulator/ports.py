"""Local ports for the sipp processes of the legs, none handed out twice while a process lives.

A sipp leg binds its SIP port (-p), a control port (-cp) and a media block (-mp): RTP audio on an
even port P and video on P+2 (P+1 and P+3 are their RTCP ports by RFC 3550). With 120 legs at
once, picking each port as "a free TCP port" collided with other legs' UDP sockets (errno 98).
So every port is probed with the socket kinds sipp will bind, a whole block at a time, and this
emulator's own leases are remembered until each sipp process is reaped. Another process on the
machine can still take a probed port before sipp binds it: `calls.play_leg` then starts that
attempt again on new ports, since sipp failed before sending anything.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Literal

from callrec.emulator.errors import NoFreePorts

MEDIA_SPAN = 4
"""Audio RTP, audio RTCP, video RTP, video RTCP: sipp binds P and P+2; we keep all four."""
TRIES = 200


@dataclass(frozen=True)
class SippPorts:
    sip: int
    control: int
    media: int
    """Even; sipp's audio RTP port (the SDP's m=audio), with P+1..P+3 kept free around it."""


class PortBook:
    """The ports leased to this emulator's live sipp processes."""

    def __init__(self) -> None:
        self._held: set[tuple[str, int]] = set()

    @contextmanager
    def lease(self, ip: str, transport: Literal["udp", "tcp"]) -> Iterator[SippPorts]:
        """Free ports for one sipp process on ``ip``, held until the block ends."""
        sip_kinds = (socket.SOCK_DGRAM, socket.SOCK_STREAM) if transport == "tcp" else (
            socket.SOCK_DGRAM,)  # fmt: skip
        ports = SippPorts(
            sip=self._take(ip, 1, sip_kinds, even=False),
            control=self._take(ip, 1, (socket.SOCK_DGRAM,), even=False),
            media=self._take(ip, MEDIA_SPAN, (socket.SOCK_DGRAM,), even=True),
        )
        try:
            yield ports
        finally:
            for first, span in ((ports.sip, 1), (ports.control, 1), (ports.media, MEDIA_SPAN)):
                self._held.difference_update((ip, first + i) for i in range(span))

    def _take(self, ip: str, span: int, kinds: tuple[int, ...], even: bool) -> int:
        for _ in range(TRIES):
            with ExitStack() as probes:
                first = _bind(probes, ip, 0, kinds[0])
                if first is None or (even and first % 2) or first + span > 65536:
                    continue
                block = [(ip, first + i) for i in range(span)]
                if self._held.intersection(block):
                    continue
                if all(
                    _bind(probes, ip, first + i, kind) is not None
                    for i in range(span)
                    for kind in kinds
                    if (i, kind) != (0, kinds[0])
                ):
                    self._held.update(block)
                    return first
        raise NoFreePorts(f"no block of {span} free port(s) on {ip} after {TRIES} tries")


def _bind(probes: ExitStack, ip: str, port: int, kind: int) -> int | None:
    """Bind a probe socket (closed when ``probes`` closes); its port, or None if taken."""
    sock = probes.enter_context(socket.socket(socket.AF_INET, kind))
    try:
        sock.bind((ip, port))
    except OSError:
        return None
    bound: int = sock.getsockname()[1]
    return bound
