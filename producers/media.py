"""RTP sockets: one UDP port per leg, drawn at random from the configured range, read with kernel
arrival stamps and the sender's address (``rtp_gate.py`` decides whose datagrams count)."""

from __future__ import annotations

import asyncio
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from callrec.producers.errors import NoFreeRtpPort

RCVBUF_BYTES = 256 * 1024  # ~1.5 s of G.711 at 20 ms: rides out a stall of the event loop
MAX_DATAGRAM = 2048
"""Read buffer: a longer datagram arrives cut to this, which is over any accepted size anyway."""
READ_BATCH = 64
"""Datagrams read per call of ``read_stamped``: a socket that is behind, a leg's last read."""
POLL_INTERVAL_S = 0.01
"""How often ``RtpPoller`` reads every socket: the longest a datagram waits in the kernel (which
stamped its arrival) before the recorder reads it, when the recorder keeps up."""
POLL_PASSES = 16
"""Reads of one socket per round at most; a recorder behind its sockets gives the event loop a
turn after these (SIP facts, ticks) and goes on at once."""
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
    and its sender (whom ``rtp_gate`` judges); a leg's last read before its socket closes.

    The kernel stamps a datagram when it enters the host, so a recorder that reads its sockets
    late (a busy event loop, a paused process) still reports when the packet came; the mixer only
    falls back on these stamps where RTP cannot place audio, but then they must not lie.
    """
    recvmsg = sock.recvmsg
    for n in range(limit):
        try:
            data, ancillary, _, sender = recvmsg(MAX_DATAGRAM, _ANCILLARY_SPACE)
        except (BlockingIOError, InterruptedError):
            return n
        except OSError:  # a queued ICMP error; the recorder never sends, nothing to do
            continue
        on_datagram(data, arrival_us(ancillary), sender)
    return limit


def arrival_us(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The kernel's receive stamp (µs, wall clock) from ``recvmsg``'s ancillary data; the read
    time if the socket has stamps off (a socket made elsewhere)."""
    if ancillary and ancillary[0][1] == SCM_TIMESTAMPNS:
        seconds, nanos = _unpack_timespec(ancillary[0][2])
        return int(seconds * 1_000_000 + nanos // 1000)
    return time.time_ns() // 1000


_unpack_timespec = _TIMESPEC.unpack_from


class RtpPoller:
    """Every RTP socket of the recorder, read in rounds every ``POLL_INTERVAL_S`` through one
    epoll, one datagram per ready socket per pass.

    Readiness per socket (the event loop's ``add_reader``) cost, for each datagram of a recorder
    that keeps up (one datagram in a socket when it wakes, at 20 ms ptime), a turn of the loop
    and a second ``recvmsg`` failing with EAGAIN, raised as an exception; and a loop busy in
    1,000 such turns a second per leg's worth of packets gave the outbox thread the GIL only
    between them. A round asks epoll which sockets hold datagrams and reads one from each, then
    asks again until none does: no read fails, one timer serves every socket, and between rounds
    the thread sleeps. A datagram waits at most an interval in the kernel, which stamped its
    arrival (``SO_TIMESTAMPNS``) when it came, so what the recorder reports is unchanged.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, interval_s: float = POLL_INTERVAL_S
    ) -> None:
        self._loop = loop
        self.interval_s = interval_s
        self._epoll = select.epoll()
        self._readers: dict[int, tuple[Any, OnDatagram, socket.socket]] = {}
        """By file descriptor: the socket's ``recvmsg``, its handler, the socket."""
        self._round_handle: asyncio.Handle | None = None
        self._next_round = 0.0

    def add(self, sock: socket.socket, on_datagram: OnDatagram) -> None:
        """Read ``sock`` from the next round on (from the event loop's thread)."""
        self._readers[sock.fileno()] = (sock.recvmsg, on_datagram, sock)
        self._epoll.register(sock.fileno(), select.EPOLLIN)
        if self._round_handle is None:
            self._next_round = self._loop.time()
            self._round_handle = self._loop.call_soon(self._round)

    def remove(self, sock: socket.socket) -> None:
        """Stop reading ``sock`` (before it is closed; what it holds is the caller's to read)."""
        if self._readers.pop(sock.fileno(), None) is not None:
            self._epoll.unregister(sock.fileno())

    def close(self) -> None:
        if self._round_handle is not None:
            self._round_handle.cancel()
            self._round_handle = None
        self._readers.clear()
        self._epoll.close()

    def _round(self) -> None:
        """Read what every socket holds, then wait for the next round (at once if behind)."""
        readers = self._readers
        if not readers:
            self._round_handle = None  # the next ``add`` starts the rounds again
            return
        caught_up = False
        try:
            caught_up = self._read_ready(readers)
        finally:  # a handler's exception (logged by the loop) must not stop the reading
            loop = self._loop
            if caught_up:
                now = loop.time()
                self._next_round = max(self._next_round + self.interval_s, now)
                self._round_handle = loop.call_at(self._next_round, self._round)
            else:
                self._round_handle = loop.call_soon(self._round)

    def _read_ready(self, readers: dict[int, tuple[Any, OnDatagram, socket.socket]]) -> bool:
        """Passes of one read per ready socket until none is ready (True) or POLL_PASSES.

        A datagram older than two intervals means its socket is behind (a stalled or starved
        recorder): that socket is read on in a batch (``read_stamped``, one EAGAIN for up to
        ``READ_BATCH`` datagrams) and the loop gets a turn after the pass."""
        poll = self._epoll.poll
        space = _ANCILLARY_SPACE
        behind_us = time.time_ns() // 1000 - int(2e6 * self.interval_s)
        for _ in range(POLL_PASSES):
            ready = poll(0, len(readers) + 1)
            if not ready:
                return True
            lagging = False
            for fd, _events in ready:
                reader = readers.get(fd)
                if reader is None:  # removed by a handler in this pass
                    continue
                try:
                    data, ancillary, _, sender = reader[0](MAX_DATAGRAM, space)
                except OSError:  # EAGAIN after all, or a queued ICMP error: nothing to read
                    continue
                at_us = arrival_us(ancillary)
                reader[1](data, at_us, sender)
                if at_us < behind_us:
                    read_stamped(reader[2], reader[1])
                    lagging = True
            if lagging:
                return False
        return False
