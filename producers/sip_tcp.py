"""SIP over TCP for sippy, which ships only a UDP transport.

The accept thread checks a new connection's peer against the allow-list and the connection caps
(``sip_limits.ConnectionCaps``) before anything else, and closes it at once if either refuses:
no thread, no byte read. Each admitted connection gets a reader thread that frames the stream
(sip_framing.py) and hands each message to sippy's transaction manager on sippy's own thread,
exactly as sippy's UDP server does; the connection object is what sippy answers through
(``send_to`` writes to the stream, whatever Via says, as RFC 3261 18.2.2 wants for a
connection-oriented transport). CUCM opens one connection per node and keeps it, so a thread per
connection is cheap. A connection that sends
nothing for the idle timeout, or takes longer than the message timeout to finish a message it has
begun (a slowloris), is closed, and its thread ends.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sippy.Core.EventDispatcher import ED2
from sippy.Network_server import Remote_address
from sippy.Time.MonoTime import MonoTime

from callrec.producers.errors import BadSipInput
from callrec.producers.sip_framing import split_stream
from callrec.producers.sip_limits import ConnectionCaps

log = logging.getLogger(__name__)
Deliver = Callable[[bytes, Remote_address, Any, MonoTime], None]


class _Options:
    """The part of sippy's server options its transaction manager consults."""

    def isWildCard(self) -> bool:
        return False


class TcpConnection:
    """One peer's connection, in the shape sippy's transaction manager sends through."""

    transport = "tcp"

    def __init__(self, sock: socket.socket, local: tuple[str, int]) -> None:
        self.sock = sock
        self.local = local
        self.uopts = _Options()
        self._lock = threading.Lock()

    def getSIPaddr(self) -> tuple[tuple[str, int], str]:
        return self.local, self.transport

    def addr2str(self, address: tuple[str, int]) -> str:
        return f"tcp:{address[0]}:{address[1]}"

    def send_to(self, data: str | bytes, address: Any, delayed: bool = False) -> None:
        payload = data.encode() if isinstance(data, str) else data
        try:
            with self._lock:
                self.sock.sendall(payload)
        except OSError as e:
            log.info("TCP peer gone before our answer: %s", e)


class TcpSipServer:
    def __init__(
        self,
        host: str,
        port: int,
        deliver: Deliver,
        *,
        allowed: Callable[[str], bool],
        caps: ConnectionCaps,
        idle_timeout_s: float,
        message_timeout_s: float,
        stats: Counter[str],
    ) -> None:
        self.deliver = deliver
        self.allowed = allowed
        self.caps = caps
        self.idle_timeout_s = idle_timeout_s
        self.message_timeout_s = message_timeout_s
        self.stats = stats  # the UAS's SIP counters: tcp_refused (at accept), tcp_timed_out
        self.listener = socket.create_server((host, port), reuse_port=False)
        self.local = (host, port)

    def start(self) -> None:
        threading.Thread(target=self._accept, name="sip-tcp-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, peer = self.listener.accept()
            except OSError as e:
                if e.errno in _TRANSIENT_ACCEPT_ERRORS:  # out of descriptors, peer gone: go on
                    log.warning("SIP/TCP accept: %s", e)
                    time.sleep(0.05)
                    continue
                return
            why = "not on the allow-list" if not self.allowed(peer[0]) else self.caps.admit(peer[0])
            if why is not None:
                self.stats["tcp_refused"] += 1
                log.info("SIP/TCP from %s:%d closed at accept: %s", peer[0], peer[1], why)
                _close_at_once(sock)
                continue
            threading.Thread(
                target=self._serve, args=(sock, peer), name=f"sip-tcp-{peer[0]}", daemon=True
            ).start()

    def _serve(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        try:
            self._read(sock, peer)
        finally:
            self.caps.release(peer[0])

    def _read(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        connection = TcpConnection(sock, self.local)
        source = Remote_address(peer, "tcp")
        buffer = b""
        deadline = time.monotonic() + self.idle_timeout_s
        with sock:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.stats["tcp_timed_out"] += 1
                    what = "a message begun and not finished" if buffer else "idle"
                    log.info("closing SIP/TCP from %s:%d: %s", peer[0], peer[1], what)
                    return
                sock.settimeout(remaining)
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue  # the loop head closes it
                except OSError:
                    return
                if not data:
                    return
                was_partial = bool(buffer.strip(b"\r\n"))
                try:
                    messages, buffer = split_stream(buffer + data)
                except BadSipInput as e:
                    log.info("closing SIP/TCP from %s:%d: %s", peer[0], peer[1], e)
                    return
                for message in messages:
                    ED2.callFromThread(self.deliver, message, source, connection, MonoTime())
                if not buffer.strip(b"\r\n"):
                    deadline = time.monotonic() + self.idle_timeout_s
                elif messages or not was_partial:  # a new message has begun: finish it in time
                    deadline = time.monotonic() + self.message_timeout_s


_TRANSIENT_ACCEPT_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM,
                            errno.ECONNABORTED, errno.EPROTO}  # fmt: skip


def _close_at_once(sock: socket.socket) -> None:
    """Reset, not FIN: the refused peer learns at once, and no TIME_WAIT is left on our side."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()
