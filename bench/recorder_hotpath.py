"""The recorder's per-packet path in one process, without sockets, Kafka or a loaded machine's lag.

Run by hand: ``.venv/bin/python bench/recorder_hotpath.py [--profile]``. It opens ``--legs``
legs on a real ``Recorder`` (as the SIP thread's facts would) and hands each of them
``--packets`` G.711 datagrams through ``Recorder._on_datagram``, the way ``read_stamped`` does:
the RTP gate, header parse, chunker, and for every tenth packet the chunk's Avro encoding. The
outbox only counts what it is given (the spool and Kafka are ``recorder_load.py``'s to measure).
The ceiling is the same loop handing every datagram to a no-op. It prints CPU µs per packet of
both; ``--profile`` adds cProfile's top functions. Under load a live recorder reads several
datagrams per wake-up, which this loop does not model; its figures move less with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rtp_ceiling import machine_load, payload_of

from callrec.producers.leg import RecorderIdentity
from callrec.producers.media import PortPool
from callrec.producers.metadata import call_metadata
from callrec.producers.recorder import Recorder
from callrec.producers.rtp import build_rtp
from callrec.producers.sdp import RemoteMedia
from callrec.producers.settings import RecorderSettings
from callrec.producers.sip_facts import DialogAccepted, DialogOpened

PHONE = ("127.0.0.1", 30_000)


class CountingOutbox:
    """Takes the recorder's events and encoded chunks and only counts them."""

    def __init__(self) -> None:
        self.chunks = self.events = 0

    def put_encoded(self, *_: Any) -> None:
        self.chunks += 1

    def put(self, *_: Any) -> None:
        self.events += 1


class NoSip:
    def hang_up(self, leg_id: str) -> None:
        pass

    def stats(self) -> dict[str, int]:
        return {}


def recorder_with_legs(legs: int) -> tuple[Recorder, CountingOutbox, list[Any]]:
    loop = asyncio.new_event_loop()
    outbox = CountingOutbox()
    recorder = Recorder(RecorderSettings(), outbox, PortPool("127.0.0.1", range(0)),  # type: ignore[arg-type]
                        RecorderIdentity("bench", "i1"), loop, NoSip())  # fmt: skip
    # The loop never runs: the recorder's RtpPoller never reads the sockets.
    media = RemoteMedia(PHONE[0], PHONE[1], "sendonly", (8, 101), {8: ("PCMA", 8000)})
    for n in range(legs):
        meta = call_metadata(f"<sip:1@h;x-nearend;x-refci={n};x-nearendclusterid=BENCH>;tag=1", "d")
        opened = DialogOpened(f"bench:{n}", meta, f"c{n}", "1", "2", None, "7878",
                              "127.0.0.1:5060", 40_000 + n, None, media, 0)  # fmt: skip
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        recorder._open(DialogAccepted(opened, sock))
    return recorder, outbox, list(recorder.legs.values())


def run(legs: int, packets: int, handler: Any, live_legs: list[Any]) -> float:
    """CPU µs per packet of ``handler(live, datagram, arrival_us, sender)``."""
    start_us = time.time_ns() // 1000
    datagrams = [build_rtp(seq, seq * 160, 1000, 8, payload_of(seq)) for seq in range(packets)]
    cpu = time.process_time()
    for seq, datagram in enumerate(datagrams):
        at_us = start_us + seq * 20_000
        for live in live_legs:
            handler(live, datagram, at_us, PHONE)
    return (time.process_time() - cpu) / (legs * packets) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--legs", type=int, default=200)
    parser.add_argument("--packets", type=int, default=500)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    print(machine_load())
    _, _, floor_legs = recorder_with_legs(args.legs)
    floor = run(args.legs, args.packets, lambda *_: None, floor_legs)
    recorder, outbox, live_legs = recorder_with_legs(args.legs)
    profile = cProfile.Profile() if args.profile else None
    if profile:
        profile.enable()
    cost = run(args.legs, args.packets, recorder._on_datagram, live_legs)
    if profile:
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)
    print(f"{args.legs} legs x {args.packets} packets: {outbox.chunks} chunks encoded")
    print(f"recorder per-packet path {cost:.2f} µs/packet; the loop alone {floor:.2f} µs/packet; "
          f"the path's own cost {cost - floor:.2f} µs/packet")  # fmt: skip


if __name__ == "__main__":
    main()
