"""RTP sockets report when the kernel received a datagram (not when the recorder got to it) and
from whom; their ports are drawn at random."""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Callable

import pytest

from callrec.infra.procs import free_port
from callrec.producers.errors import NoFreeRtpPort
from callrec.producers.media import MAX_DATAGRAM, PortPool, RtpPoller, read_stamped


def now_us() -> int:
    return time.time_ns() // 1000


def wait_for_kernel_stamps(sock: socket.socket, sender: socket.socket) -> None:
    """Linux turns packet stamping on lazily (a deferred static key) when the first socket of the
    host asks for it; until then a datagram is stamped when read. Wait until it is on (seen in a
    test run with no other stamping socket alive)."""
    deadline = time.monotonic() + 5
    stamps: list[int] = []
    while time.monotonic() < deadline:
        stamps.clear()
        sender.sendto(b"warm-up", sock.getsockname())
        sent = now_us()
        read_stamped(sock, lambda _, at, __: stamps.append(at))
        if stamps and stamps[0] <= sent:
            return
        time.sleep(0.01)
    raise AssertionError("the kernel never stamped a datagram on arrival")


def test_datagrams_read_late_carry_the_time_they_arrived() -> None:
    port = free_port()
    pool = PortPool("127.0.0.1", range(port, port + 1))
    _, sock = pool.acquire()
    received: list[tuple[bytes, int]] = []
    with sock, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        wait_for_kernel_stamps(sock, sender)
        before = now_us()
        for n in range(3):
            sender.sendto(bytes([n]) * 20, ("127.0.0.1", port))
        after = now_us()
        time.sleep(0.3)  # the recorder is busy: the datagrams wait in the kernel
        read_at = now_us()
        assert read_stamped(sock, lambda data, at, _: received.append((data, at))) == 3
    assert [data for data, _ in received] == [bytes([n]) * 20 for n in range(3)]
    assert all(before <= at <= after for _, at in received), (before, received, read_at)
    assert read_at - after >= 300_000


def test_a_batch_stops_at_its_limit_and_leaves_the_rest_queued() -> None:
    port = free_port()
    _, sock = PortPool("127.0.0.1", range(port, port + 1)).acquire()
    received: list[bytes] = []
    with sock, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for n in range(5):
            sender.sendto(bytes([n]), ("127.0.0.1", port))
        assert read_stamped(sock, lambda data, *_: received.append(data), limit=2) == 2
        assert read_stamped(sock, lambda data, *_: received.append(data)) == 3
        assert read_stamped(sock, lambda data, *_: received.append(data)) == 0
    assert received == [bytes([n]) for n in range(5)]


def test_each_datagram_comes_with_its_sender_and_an_oversize_one_is_cut_to_the_buffer() -> None:
    port = free_port()
    _, sock = PortPool("127.0.0.1", range(port, port + 1)).acquire()
    received: list[tuple[int, tuple[str, int]]] = []
    with sock, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.2", 0))
        sender.sendto(b"a" * 172, ("127.0.0.1", port))
        sender.sendto(b"b" * 9000, ("127.0.0.1", port))  # loopback: queued before sendto returns
        assert read_stamped(sock, lambda data, _, source: received.append((len(data), source)))
        where = sender.getsockname()
    assert received == [(172, where), (MAX_DATAGRAM, where)]  # over every accepted size


def test_a_socket_without_stamps_gives_each_datagram_the_time_it_was_read() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:  # fmt: skip
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)  # as PortPool's
        sender.sendto(b"unstamped", sock.getsockname())  # loopback: queued before sendto returns
        sent = now_us()
        while now_us() <= sent + 1000:  # the clock moves on: a read time cannot pass for arrival
            pass
        received: list[tuple[bytes, int]] = []
        read_from = now_us()
        assert read_stamped(sock, lambda data, at, _: received.append((data, at))) == 1
    assert received[0][0] == b"unstamped" and received[0][1] >= read_from


def test_a_queued_socket_error_is_skipped_and_the_datagram_behind_it_read() -> None:
    port = free_port()
    _, sock = PortPool("127.0.0.1", range(port, port + 1)).acquire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind(("127.0.0.1", 0))
        peer = gone.getsockname()
    errors = select.poll()
    errors.register(sock, select.POLLERR)
    with sock, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sock.connect(peer)
        sock.send(b"to nobody")  # ICMP port unreachable: ECONNREFUSED queued on the socket
        assert errors.poll(5000), "no ICMP error queued"
        sender.bind(peer)
        sender.sendto(b"after the error", ("127.0.0.1", port))
        received: list[bytes] = []
        read_stamped(sock, lambda data, *_: received.append(data))
    assert received == [b"after the error"]


def raising_on(bad: bytes, received: list[bytes]) -> Callable[..., None]:
    """A handler with a bug: it keeps every datagram, then raises on ``bad``."""

    def handler(data: bytes, *_: object) -> None:
        received.append(data)
        if data == bad:
            raise ValueError("a bug in a handler")

    return handler


def test_a_handler_that_raises_stops_the_batch_and_leaves_the_rest_queued() -> None:
    port = free_port()
    _, sock = PortPool("127.0.0.1", range(port, port + 1)).acquire()
    received: list[bytes] = []
    handler = raising_on(b"bad", received)

    with sock, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for data in (b"good", b"bad", b"later"):
            sender.sendto(data, ("127.0.0.1", port))
        with pytest.raises(ValueError, match="a bug in a handler"):
            read_stamped(sock, handler)
        assert received == [b"good", b"bad"]
        assert read_stamped(sock, handler) == 1
    assert received == [b"good", b"bad", b"later"]


def test_ports_are_drawn_at_random_and_all_of_them_used() -> None:
    base = free_port()
    pool = PortPool("127.0.0.1", range(base, base + 40))
    taken: list[tuple[int, socket.socket]] = []
    with pytest.raises(NoFreeRtpPort):
        while True:
            taken.append(pool.acquire())
    for _, sock in taken:
        sock.close()
    ports = [port for port, _ in taken]
    assert len(ports) >= 30 and len(set(ports)) == len(ports)  # a few may be another's
    assert ports != sorted(ports)  # in order from the bottom: ~1 chance in 30!


async def until(condition: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_the_poller_reads_every_socket_with_kernel_stamps_until_one_is_removed() -> None:
    base = free_port()
    pool = PortPool("127.0.0.1", range(base, base + 30))
    socks = [pool.acquire()[1] for _ in range(3)]
    poller = RtpPoller(asyncio.get_running_loop(), interval_s=0.005)
    received: dict[int, list[tuple[bytes, int]]] = {n: [] for n in range(3)}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        wait_for_kernel_stamps(socks[0], sender)
        for n, sock in enumerate(socks):
            poller.add(sock, lambda data, at, _, n=n: received[n].append((data, at)))  # type: ignore[misc]
        before = now_us()
        for k in range(40):  # more than one pass reads from a socket: all of it in a round
            for sock in socks:
                sender.sendto(bytes([k]), sock.getsockname())
        after = now_us()
        await until(lambda: all(len(got) == 40 for got in received.values()))
        assert all([data for data, _ in got] == [bytes([k]) for k in range(40)]
                   for got in received.values())  # fmt: skip
        assert all(before <= at <= after for got in received.values() for _, at in got)
        poller.remove(socks[2])
        for sock in socks:
            sender.sendto(b"late", sock.getsockname())
        await until(lambda: len(received[0]) == len(received[1]) == 41)
        await asyncio.sleep(0.05)  # ten rounds: the removed socket is not read
        assert len(received[2]) == 40
        assert read_stamped(socks[2], lambda *_: None) == 1  # it is still queued there
    poller.close()
    for sock in socks:
        sock.close()


async def test_a_handler_that_raises_does_not_stop_the_rounds() -> None:
    port = free_port()
    _, sock = PortPool("127.0.0.1", range(port, port + 1)).acquire()
    poller = RtpPoller(asyncio.get_running_loop(), interval_s=0.005)
    received: list[bytes] = []
    handler = raising_on(b"bad", received)

    with sock, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        poller.add(sock, handler)
        sender.sendto(b"bad", ("127.0.0.1", port))
        await until(lambda: received == [b"bad"])
        sender.sendto(b"good", ("127.0.0.1", port))
        await until(lambda: received == [b"bad", b"good"])
        poller.remove(sock)
    poller.close()


async def test_a_socket_behind_is_read_on_in_order_with_the_stamps_of_when_it_came() -> None:
    port = free_port()
    _, sock = PortPool("127.0.0.1", range(port, port + 1)).acquire()
    poller = RtpPoller(asyncio.get_running_loop(), interval_s=0.005)
    received: list[tuple[bytes, int]] = []
    with sock, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        wait_for_kernel_stamps(sock, sender)
        before = now_us()
        for k in range(150):  # more than a batch
            sender.sendto(k.to_bytes(2, "big"), ("127.0.0.1", port))
        after = now_us()
        await asyncio.sleep(0.1)  # twenty intervals behind: the batched reads
        poller.add(sock, lambda data, at, _: received.append((data, at)))
        await until(lambda: len(received) == 150)
        poller.remove(sock)
    poller.close()
    assert [data for data, _ in received] == [k.to_bytes(2, "big") for k in range(150)]
    assert all(before <= at <= after for _, at in received)
