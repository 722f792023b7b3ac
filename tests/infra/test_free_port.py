"""``free_port``: a port a SIP listener can take for both TCP and UDP, outside the range the
kernel hands to client sockets."""

from __future__ import annotations

import socket

import pytest

from callrec.infra import procs
from callrec.infra.errors import PortTaken


def ephemeral_low() -> int:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        return int(f.read().split()[0])


def test_a_drawn_port_binds_for_tcp_and_udp_below_the_ephemeral_range() -> None:
    for _ in range(20):
        port = procs.free_port()
        assert port in procs.FREE_PORTS and port < ephemeral_low()
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))


def test_a_port_taken_for_udp_alone_is_never_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        taken = squatter.getsockname()[1]
        monkeypatch.setattr(procs, "FREE_PORTS", range(taken, taken + 1))
        with pytest.raises(PortTaken, match="no free port"):
            procs.free_port()
