"""RTP sockets: one UDP port per leg, drawn at random from the configured range, read with kernel
arrival stamps and the sender's address (``rtp_gate.py`` decides whose datagrams count)."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections.abc import Callable

from callrec.producers.errors import NoFreeRtpPort

RCVBUF_BYTES = 256 * 1024  # ~1.5 s of G.711 at 20 ms: rides out a stall of the event loop
MAX_DATAGRAM = 2048
"""Read buffer: a longer datagram arrives cut to this, which is over any accepted size anyway."""
READ_BATCH = 64  # datagrams read per wake-up before other sockets get their turn
# Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS, asm-generic value; Python 3.11 does not name it):
# every datagram carries a struct timespec of CLOCK_REALTIME, the clock time.time_ns() reads.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)
OnDatagram = Callable[[bytes, int, tuple[str, int]], None]
"""Called with the datagram, its arrival (µs, wall clock) and its sender's address."""


class PortPool:
    """Hands out bound RTP sockets; shared by the SIP thread (acquire) and asyncio (release).

    Ports are drawn at random from the free ones, so a leg's port says nothing about the next
    one's (in order from the bottom of the range, a stranger who sees one port can aim RTP at the
    next call's before its phone starts sending)."""

    def __init__(self, host: str, ports: range) -> None:
        self.host = host
        self._free: list[int] = list(ports)
        self._lock = threading.Lock()
        self._random = random.SystemRandom()

    def acquire(self) -> tuple[int, socket.socket]:
        """A socket bound now, so RTP that beats the ACK waits in the kernel, not lost."""
        with self._lock:
            busy: list[int] = []
            try:
                while self._free:
                    port = self._take_random()
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
                        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                        sock.bind((self.host, port))
                    except OSError:
                        sock.close()
                        busy.append(port)  # taken by another process; try it again later
                        continue
                    sock.setblocking(False)
                    return port, sock
            finally:
                self._free.extend(busy)
        raise NoFreeRtpPort(f"no free RTP port on {self.host}")

    def _take_random(self) -> int:
        """Remove and return a random free port in O(1): swap it with the last one."""
        index = self._random.randrange(len(self._free))
        self._free[index], self._free[-1] = self._free[-1], self._free[index]
        return self._free.pop()

    def release(self, port: int) -> None:
        with self._lock:
            self._free.append(port)


def read_stamped(sock: socket.socket, on_datagram: OnDatagram, limit: int = READ_BATCH) -> int:
    """Hand on up to ``limit`` queued datagrams, each with the kernel's arrival time (µs, wall)
    and its sender (whom ``rtp_gate`` judges).

    The kernel stamps a datagram when it enters the host, so a recorder that reads its sockets
    late (a busy event loop, a paused process) still reports when the packet came; the mixer only
    falls back on these stamps where RTP cannot place audio, but then they must not lie.
    One ``recvmsg`` per datagram and a batch per wake-up keep the cost below asyncio's transport.
    """
    recvmsg = sock.recvmsg
    unpack = _TIMESPEC.unpack_from
    for n in range(limit):
        try:
            data, ancillary, _, sender = recvmsg(MAX_DATAGRAM, _ANCILLARY_SPACE)
        except (BlockingIOError, InterruptedError):
            return n
        except OSError:  # a queued ICMP error; the recorder never sends, nothing to do
            continue
        if ancillary and ancillary[0][1] == SCM_TIMESTAMPNS:
            seconds, nanos = unpack(ancillary[0][2])
            on_datagram(data, seconds * 1_000_000 + nanos // 1000, sender)
        else:  # stamps off (a socket made elsewhere): the read time, as before
            on_datagram(data, time.time_ns() // 1000, sender)
    return limit
