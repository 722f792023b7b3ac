"""RTP sockets: one UDP port per leg from the configured range, received without decoding."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from callrec.producers.errors import NoFreeRtpPort

RCVBUF_BYTES = 256 * 1024  # ~1.5 s of G.711 at 20 ms: rides out a stall of the event loop


class PortPool:
    """Hands out bound RTP sockets; shared by the SIP thread (acquire) and asyncio (release)."""

    def __init__(self, host: str, ports: range) -> None:
        self.host = host
        self._free: deque[int] = deque(ports)
        self._lock = threading.Lock()

    def acquire(self) -> tuple[int, socket.socket]:
        """A socket bound now, so RTP that beats the ACK waits in the kernel, not lost."""
        with self._lock:
            for _ in range(len(self._free)):
                port = self._free.popleft()
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
                    sock.bind((self.host, port))
                except OSError:
                    sock.close()
                    self._free.append(port)  # taken by another process; try it again later
                    continue
                sock.setblocking(False)
                return port, sock
        raise NoFreeRtpPort(f"no free RTP port on {self.host}")

    def release(self, port: int) -> None:
        with self._lock:
            self._free.append(port)

    @property
    def free(self) -> int:
        return len(self._free)


class RtpReceiver(asyncio.DatagramProtocol):
    """Stamps each datagram with its arrival wall clock and hands it on; nothing else."""

    def __init__(self, on_datagram: Callable[[bytes, int], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.on_datagram(data, time.time_ns() // 1000)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors on a receive-only socket are harmless (the recorder never sends)."""
