"""SIP over TCP for sippy, which ships only a UDP transport.

Each accepted connection gets a reader thread that frames the stream (sip_framing.py) and hands
each message to sippy's transaction manager on sippy's own thread, exactly as sippy's UDP server
does; the connection object is what sippy answers through (``send_to`` writes to the stream,
whatever Via says, as RFC 3261 18.2.2 wants for a connection-oriented transport). CUCM opens one
connection per node and keeps it, so a thread per connection is cheap.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from sippy.Core.EventDispatcher import ED2
from sippy.Network_server import Remote_address
from sippy.Time.MonoTime import MonoTime

from callrec.producers.errors import BadSipInput
from callrec.producers.sip_framing import split_stream

log = logging.getLogger(__name__)
Deliver = Callable[[bytes, Remote_address, Any, MonoTime], None]
IDLE_TIMEOUT_S = 600.0  # CUCM re-pings at least every 120 s; a silent connection is dead


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
    def __init__(self, host: str, port: int, deliver: Deliver) -> None:
        self.deliver = deliver
        self.listener = socket.create_server((host, port), reuse_port=False)
        self.local = (host, port)

    def start(self) -> None:
        threading.Thread(target=self._accept, name="sip-tcp-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, peer = self.listener.accept()
            except OSError:
                return
            threading.Thread(
                target=self._serve, args=(sock, peer), name=f"sip-tcp-{peer[0]}", daemon=True
            ).start()

    def _serve(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        connection = TcpConnection(sock, self.local)
        source = Remote_address(peer, "tcp")
        sock.settimeout(IDLE_TIMEOUT_S)
        buffer = b""
        with sock:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                try:
                    messages, buffer = split_stream(buffer + data)
                except BadSipInput as e:
                    log.info("closing SIP/TCP from %s:%d: %s", peer[0], peer[1], e)
                    return
                for message in messages:
                    ED2.callFromThread(self.deliver, message, source, connection, MonoTime())
