"""Sends CUCM's OPTIONS pings over UDP or TCP and reads the status line of the answer.

Only the I/O: what an outcome means is `service.on_ping`'s business.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from typing import cast

from callrec.emulator.availability import ConnectFailed, NoResponse, Outcome, Response
from callrec.emulator.model import Destination

STATUS_LINE = re.compile(rb"^SIP/2\.0 (\d{3})")
CALL_ID = re.compile(rb"^(?:Call-ID|i)\s*:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def options_request(
    target: Destination, local_ip: str, local_port: int, transport: str
) -> tuple[str, bytes]:
    """A fresh OPTIONS transaction (its Call-ID and bytes); retransmissions resend the bytes."""
    tag = uuid.uuid4().hex[:12]
    call_id = f"{tag}@{local_ip}"
    uri = f"sip:{target.host}:{target.port}"
    request = (
        f"OPTIONS {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport.upper()} {local_ip}:{local_port};rport;branch=z9hG4bK{tag}\r\n"
        f"From: <sip:cucm@{local_ip}>;tag={tag}\r\n"
        f"To: <{uri}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 101 OPTIONS\r\n"
        "Max-Forwards: 70\r\n"
        "User-Agent: callrec-cucm-emulator\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    return call_id, request.encode()


class UdpPinger(asyncio.DatagramProtocol):
    """One UDP socket for every destination's pings; answers are matched by Call-ID."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[str, asyncio.Future[int]] = {}

    @classmethod
    async def open(cls, local_ip: str) -> UdpPinger:
        loop = asyncio.get_running_loop()
        _, pinger = await loop.create_datagram_endpoint(cls, local_addr=(local_ip, 0))
        return pinger

    @property
    def local_port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        status, call_id = STATUS_LINE.match(data), CALL_ID.search(data)
        if status is None or call_id is None or int(status[1]) < 200:
            return  # a request, garbage or a provisional answer: keep waiting for a final one
        future = self.pending.get(call_id[1].decode(errors="replace"))
        if future is not None and not future.done():
            future.set_result(int(status[1]))

    def error_received(self, exc: Exception) -> None:
        """ICMP port unreachable and the like: the ping simply goes unanswered, as for CUCM."""

    async def transmit(
        self, target: Destination, call_id: str, request: bytes, wait_s: float
    ) -> Outcome:
        assert self.transport is not None
        future = self.pending.setdefault(call_id, asyncio.get_running_loop().create_future())
        self.transport.sendto(request, (target.host, target.port))
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that arrives as the
            # answer does (gh-86296), and the ping loop then outlived `async with Cucm`.
            async with asyncio.timeout(wait_s):
                return Response(await asyncio.shield(future))
        except TimeoutError:
            return NoResponse()

    def forget(self, call_id: str) -> None:
        self.pending.pop(call_id, None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def transmit_tcp(target: Destination, local_ip: str, wait_s: float) -> Outcome:
    """One OPTIONS on its own TCP connection; a refused or hung connect is ConnectFailed."""
    try:
        async with asyncio.timeout(wait_s):
            reader, writer = await asyncio.open_connection(
                target.host, target.port, local_addr=(local_ip, 0)
            )
    except (OSError, TimeoutError):
        return ConnectFailed()
    try:
        port = writer.get_extra_info("sockname")[1]
        writer.write(options_request(target, local_ip, port, "tcp")[1])
        async with asyncio.timeout(wait_s):
            while line := await reader.readline():
                status = STATUS_LINE.match(line)
                if status is not None and int(status[1]) >= 200:
                    return Response(int(status[1]))
        return NoResponse()
    except (OSError, TimeoutError):
        return NoResponse()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
