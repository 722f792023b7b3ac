"""A CUCM host in its own network namespace, one veth link per recorder, created and removed by
the test. The addresses (10.<a>.<link>.0/30) live only on those veth ends: the namespace side and
the host side of each pair, where the recorder binds; no host interface is touched."""

from __future__ import annotations

import os
import random
import subprocess
from dataclasses import dataclass, field


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Link:
    host_if: str
    host_ip: str
    cucm_ip: str


@dataclass
class CucmNamespace:
    links: dict[str, Link] = field(default_factory=dict)
    name: str = field(default_factory=lambda: f"crcucm{os.getpid() % 100000}")

    def create(self, recorders: list[str]) -> None:
        net = random.randrange(100, 250)
        ip("netns", "add", self.name)
        ip("-n", self.name, "link", "set", "lo", "up")
        for n, recorder in enumerate(recorders, start=1):
            host_if, cucm_if = f"cr{os.getpid() % 100000}h{n}", f"cr{os.getpid() % 100000}c{n}"
            link = Link(host_if, f"10.{net}.{n}.1", f"10.{net}.{n}.2")
            ip("link", "add", host_if, "type", "veth", "peer", "name", cucm_if)
            self.links[recorder] = link
            ip("link", "set", cucm_if, "netns", self.name)
            ip("addr", "add", f"{link.host_ip}/30", "dev", host_if)
            ip("link", "set", host_if, "up")
            ip("-n", self.name, "addr", "add", f"{link.cucm_ip}/30", "dev", cucm_if)
            ip("-n", self.name, "link", "set", cucm_if, "up")

    def cut(self, recorder: str) -> None:
        """The link goes down for real: no carrier, its routes gone on both sides."""
        ip("link", "set", self.links[recorder].host_if, "down")

    def restore(self, recorder: str) -> None:
        ip("link", "set", self.links[recorder].host_if, "up")

    def exec_argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def remove(self) -> None:
        """Deleting the namespace deletes its veth ends, and with them their host peers."""
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)
        for link in self.links.values():
            subprocess.run(["ip", "link", "del", link.host_if], check=False, capture_output=True)
