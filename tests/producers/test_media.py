"""RTP sockets report when the kernel received a datagram, not when the recorder got to it."""

from __future__ import annotations

import socket
import time

from callrec.infra.procs import free_port
from callrec.producers.media import PortPool, read_stamped


def now_us() -> int:
    return time.time_ns() // 1000


def test_datagrams_read_late_carry_the_time_they_arrived() -> None:
    port = free_port()
    pool = PortPool("127.0.0.1", range(port, port + 1))
    _, sock = pool.acquire()
    received: list[tuple[bytes, int]] = []
    with sock, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        before = now_us()
        for n in range(3):
            sender.sendto(bytes([n]) * 20, ("127.0.0.1", port))
        after = now_us()
        time.sleep(0.3)  # the recorder is busy: the datagrams wait in the kernel
        read_at = now_us()
        assert read_stamped(sock, lambda data, at: received.append((data, at))) == 3
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
        assert read_stamped(sock, lambda data, _: received.append(data), limit=2) == 2
        assert read_stamped(sock, lambda data, _: received.append(data)) == 3
        assert read_stamped(sock, lambda data, _: received.append(data)) == 0
    assert received == [bytes([n]) for n in range(5)]
