"""The ports leased to sipp processes: never one twice while held, never one already bound."""

from __future__ import annotations

import socket
from contextlib import ExitStack

from callrec.emulator.ports import MEDIA_SPAN, PortBook, SippPorts


def ports_of(lease: SippPorts) -> list[int]:
    return [lease.sip, lease.control, *range(lease.media, lease.media + MEDIA_SPAN)]


def test_leases_held_at_once_never_share_a_port_and_media_starts_even() -> None:
    book = PortBook()
    with ExitStack() as held:
        leases = [held.enter_context(book.lease("127.0.0.1", "udp")) for _ in range(150)]
        ports = [port for lease in leases for port in ports_of(lease)]
        assert len(ports) == len(set(ports)) == 150 * (2 + MEDIA_SPAN)
        assert all(lease.media % 2 == 0 for lease in leases)


def test_a_port_bound_by_another_socket_is_never_leased() -> None:
    book = PortBook()
    with ExitStack() as bound:
        taken = set()
        for _ in range(300):  # UDP sockets of "other processes", all over the ephemeral range
            sock = bound.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            sock.bind(("127.0.0.1", 0))
            taken.add(sock.getsockname()[1])
        for _ in range(100):
            with book.lease("127.0.0.1", "tcp") as lease:
                assert not taken.intersection(ports_of(lease)), lease


def test_a_released_lease_can_be_leased_again() -> None:
    book = PortBook()
    with book.lease("127.0.0.1", "udp") as lease:
        held = set(ports_of(lease))
    assert book._held == set() and held
