"""The largest number of concurrent calls whose recordings are byte-exact, and what it costs.

Run by hand: ``.venv/bin/python bench/recording_load.py --calls 100,200,300 --seconds 15``.
For each N it first measures a bare UDP receiver (the recorder's socket reading and nothing else:
the same sockets, ``read_stamped`` on an asyncio loop) as the ceiling, then the real recorder
process (``bench/recorder_load.py``'s minimal CUCM UAC and RTP sender: 2N legs of 20 ms PCMA with
a different frame per sequence number) into a Kafka broker started here. After the calls end it
reads every AudioChunk back, runs each call through the mixer's timeline, decoder and renderer
(``plan_leg`` -> ``decode_legs`` -> ``render``) and checks every leg's channel frame by frame
against the frames sent. It prints, per N: recordings byte-exact, frames out of place, packets the
kernel dropped, the recorder's CPU in cores, calls per core, and the ratio of its CPU to the bare
receiver's; and finally the largest N at which every recording was byte-exact.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from aiokafka import TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_uac import Uac, open_calls
from recorder_load import start_recorder, tail_sample
from rtp_ceiling import (
    bare_ceiling,
    machine_load,
    measure,
    payload_of,
    read_audio_chunks,
    start_sending,
    udp_drops,
    with_broker,
)

from callrec.avro.events import AudioChunk, LegEnded
from callrec.infra.procs import free_port
from callrec.sinks.decode import decode_legs
from callrec.sinks.render import render
from callrec.sinks.timeline import plan_leg
from tests.sinks.factory import alaw_to_pcm

FRAME = 160


@dataclass
class Step:
    calls: int
    recordings: int = 0
    exact: int = 0
    frames_off: int = 0
    kernel_drops: int = 0
    shifted_runs: int = 0
    recorder_cores: float = 0.0
    bare_cores: float = 0.0
    late_ms: float = 0.0


async def recorder_run(step: Step, seconds: float, bootstrap: str, work: Path) -> None:
    legs = step.calls * 2
    sip_port = free_port()
    work.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - before the measurement
    recorder = start_recorder(bootstrap, work, legs, sip_port)
    stop_tail = asyncio.Event()
    ended: dict[str, LegEnded] = {}
    start: dict[TopicPartition, int] = {}
    tail = asyncio.create_task(tail_sample(bootstrap, stop_tail, [], ended, start))
    try:
        await asyncio.sleep(3)
        uac = Uac(sip_port)
        opened = open_calls(uac, step.calls, free_port())
        sender = start_sending([o[4] for o in opened])
        await asyncio.sleep(3)
        step.recorder_cores = (await measure(recorder.pid, sender, legs, seconds)).cores
        sender.stop()
        await asyncio.sleep(0.5)
        step.kernel_drops = udp_drops(range(40000, 40000 + legs + 101))
        for call_id, leg, refci, to_tag, _ in opened:
            uac.close_leg(call_id, leg, refci, to_tag)
        deadline = time.monotonic() + 120
        while len(ended) < legs and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    finally:
        stop_tail.set()
        await tail
        os.kill(recorder.pid, signal.SIGTERM)
        recorder.wait(30)
    chunks = await read_audio_chunks(bootstrap, start)
    check_recordings(step, chunks, ended, sender.ticks)


def check_recordings(
    step: Step, chunks: dict[str, list[AudioChunk]], ended: dict[str, LegEnded], sent: int
) -> None:
    """Each call through the mixer's pure core; each leg's channel against the frames sent."""
    expected = np.concatenate([alaw_to_pcm(payload_of(seq)) for seq in range(sent)])
    calls: dict[str, list[str]] = {}
    for leg_id, end in ended.items():
        calls.setdefault(end.call_key, []).append(leg_id)
    for leg_ids in calls.values():
        plans = [plan_leg(chunks.get(leg_id, []), ended[leg_id].chunk_count - 1)
                 for leg_id in sorted(leg_ids)]  # fmt: skip
        legs = [p for p in plans if p is not None]
        decoded, _ = decode_legs(legs)
        rendered = render(legs, decoded, 2, (0, 0))
        step.recordings += 1
        step.shifted_runs += rendered.shifted_runs
        exact = len(legs) == 2
        for plan in legs:
            channel = np.trim_zeros(rendered.samples[:, 0 if plan.leg.value == "NEAR_END" else 1])
            frames = min(len(channel), len(expected)) // FRAME
            same = (channel[: frames * FRAME].reshape(-1, FRAME)
                    == expected[: frames * FRAME].reshape(-1, FRAME)).all(axis=1)  # fmt: skip
            step.frames_off += sent - int(same.sum())
            exact = exact and len(channel) == len(expected) and bool(same.all())
            step.late_ms = max(step.late_ms, lateness_ms(chunks[plan.leg_id]))
        step.exact += exact


def lateness_ms(chunks: list[AudioChunk]) -> float:
    """How far arrival stamps fell behind the RTP clock (the sender's and the network's lag)."""
    packets = [p for c in chunks for p in c.packets]
    first = min(packets, key=lambda p: p.rtp_timestamp)
    return max(p.arrival_time_us - first.arrival_time_us
               - (p.rtp_timestamp - first.rtp_timestamp) * 125 for p in packets) / 1000  # fmt: skip


async def sweep(args: argparse.Namespace, bootstrap: str, work: Path) -> None:
    print(machine_load(), flush=True)
    steps = []
    for calls in (int(n) for n in args.calls.split(",")):
        step = Step(calls)
        step.bare_cores = (await bare_ceiling(calls * 2, min(args.seconds, 10))).cores
        await recorder_run(step, args.seconds, bootstrap, work / f"n{calls}")
        steps.append(step)
        print(
            f"N={calls}: {step.exact}/{step.recordings} recordings byte-exact, "
            f"{step.frames_off} frames out of place, {step.shifted_runs} runs shifted; "
            f"kernel drops {step.kernel_drops}; arrival behind RTP up to {step.late_ms:.0f} ms; "
            f"recorder {step.recorder_cores:.3f} cores = {calls / step.recorder_cores:,.0f} calls"
            f"/core; bare receiver {step.bare_cores:.3f} cores = "
            f"{calls / step.bare_cores:,.0f} calls/core; recorder/bare "
            f"{step.recorder_cores / step.bare_cores:.1f}x",
            flush=True,
        )
    good = [s.calls for s in steps if s.exact == s.recordings == s.calls]
    print(f"largest N with every recording byte-exact: {max(good, default=0)}")
    print(machine_load())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", default="100,200,300", help="comma-separated N to try")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting one")
    args = parser.parse_args()
    with_broker(args.bootstrap, "recording-bench-",
                lambda bootstrap, work: sweep(args, bootstrap, work))  # fmt: skip

if __name__ == "__main__":
    main()
