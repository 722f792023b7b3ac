"""Mixer speed by format and codec, run by hand: `.venv/bin/python bench/mixer_speed.py`.

For every RTP codec the mixer decodes (sinks/codecs.py) and every recording format it writes
(sinks/encode.py), stereo and mono, a two-leg call of ``--seconds`` is measured twice in the same
run, the runs interleaved so the machine's load falls on both alike:

- ceiling: PyAV encoding the call's rendered PCM alone (the same container, codec, options,
  bit rate and frame cut as the mixer; no planning, decoding, mixing or S3). Its output must be
  the mixer's bytes exactly (checked), so both encode the same PCM the same way;
- mixer: ``mix_call``, the worker's path (plan, decode, lay out, render and encode a window at
  a time, sha256), given the chunks as the worker holds them when the call ends: each one's
  packets summarised at take-in (``chunk_wire.read_chunks`` over its Avro value, in the consume
  loop as chunks arrive, so not part of a call's mix).

Figures are x real time per CPU-second of this process (median of the runs) and their ratio,
mixer / ceiling. Goal (issue 14): ratio >= 0.8 in every cell. ``--profile`` runs cProfile over
the mixer for each cell below the goal and prints where its time goes.

Call end -> RecordingArchived latency through Kafka and S3: bench/mixer_latency.py.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import hashlib
import io
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

# The repo (for tests.sinks.factory) goes after any tree put first on PYTHONPATH, so an older
# tree's callrec can be measured with this script.
sys.path.insert(1 + len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
                str(Path(__file__).resolve().parents[1]))

from callrec.avro import codec as avro_codec
from callrec.avro.events import AudioChunk, CallRecord, Leg
from callrec.sinks.chunk_wire import audio_packets
from callrec.sinks.encode import BITRATE_PER_CHANNEL, DEFAULT_FRAME, FORMATS, RecordingFormat
from callrec.sinks.packets import ChunkPackets
from callrec.sinks.recording import mix_call, render_call
from tests.sinks.factory import call_record, chunked, leg_summary, rtp_stream

GOAL = 0.8
# codec name -> (RTP payload type, payload bytes per 20 ms packet, RTP ticks per packet)
CODECS = {"PCMU": (0, 160, 160), "PCMA": (8, 160, 160), "G722": (9, 160, 160),
          "G729": (18, 20, 160)}
CODEC_DECODERS = {"PCMU": "pcm_mulaw", "PCMA": "pcm_alaw", "G722": "g722", "G729": "g729"}


def two_leg_call(codec: str, seconds: int) -> tuple[CallRecord, list[AudioChunk]]:
    """Both legs of ``codec`` for ``seconds``, random payloads (every codec decodes them)."""
    pt, size, ticks = CODECS[codec]
    key = f"Bench:{codec}"
    legs = [
        chunked(rtp_stream(seconds * 50, payload_type=pt, payload_bytes=size, ticks=ticks,
                           ssrc=ssrc, seed=seed), key, leg, leg_id, codec=codec,
                payload_type=pt)
        for leg, leg_id, ssrc, seed in ((Leg.NEAR_END, "n", 1, 1), (Leg.FAR_END, "f", 2, 2))
    ]
    record = call_record(key, [leg_summary(c, codec=codec) for c in legs],
                         duration_us=seconds * 1_000_000)
    return record, legs[0] + legs[1]


def taken_in(chunks: list[AudioChunk]) -> list[ChunkPackets]:
    """The chunks as the worker's consume loop takes them in from their Kafka values."""
    values = [(n, avro_codec.encode(chunk)) for n, chunk in enumerate(chunks)]
    return [packets for _, _, packets in audio_packets(values)]


def bare_encode(pcm: np.ndarray, rate: int, fmt: RecordingFormat) -> bytes:
    """The ceiling: PyAV alone, frames straight from the PCM array into the container."""
    out = io.BytesIO()
    channels = pcm.shape[1]
    layout = "stereo" if channels == 2 else "mono"
    planar = fmt.sample_format.endswith("p")
    with av.open(out, "w", format=fmt.container, options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(fmt.encoder, rate=rate,
                                      options={"flags": "+bitexact", **dict(fmt.options)})
        stream.layout = layout
        stream.format = fmt.sample_format
        if fmt.name in BITRATE_PER_CHANNEL:
            stream.bit_rate = BITRATE_PER_CHANNEL[fmt.name] * channels
        stream.codec_context.open()
        step = stream.codec_context.frame_size or DEFAULT_FRAME
        data = np.ascontiguousarray(pcm.T) if planar else pcm.reshape(1, -1)
        for start in range(0, len(pcm), step):
            end = min(start + step, len(pcm))
            block = data[:, start:end] if planar else data[:, start * channels:end * channels]
            frame = av.AudioFrame.from_ndarray(block, format=fmt.sample_format, layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def leg_payloads(chunks: list[AudioChunk]) -> list[list[bytes]]:
    """Each leg's chunks as one joined payload each (what the recorder stored), in order."""
    legs: dict[str, list[bytes]] = {}
    for chunk in chunks:
        legs.setdefault(chunk.leg_id, []).append(b"".join(p.payload for p in chunk.packets))
    return [legs[k] for k in sorted(legs, reverse=True)]  # "n" (near, left) first


def bare_transcode(legs: list[list[bytes]], decoder: str, rate: int, channels: int,
                   fmt: RecordingFormat) -> tuple[np.ndarray, bytes]:
    """A second, looser ceiling: PyAV decoding each leg's chunks (one packet per chunk, as the
    mixer does) with no timeline, the legs put side by side (or summed), then encoded alone."""
    tracks = []
    for payloads in legs:
        context = av.CodecContext.create(decoder, "r")
        context.sample_rate = rate if decoder != "g722" else 16000  # type: ignore[attr-defined]
        context.layout = "mono"  # type: ignore[attr-defined]
        parts = [np.frombuffer(f.planes[0], dtype=np.int16)[:f.samples] for data in payloads
                 for f in context.decode(av.Packet(data))]  # type: ignore[attr-defined]
        tracks.append(np.concatenate(parts))
    if channels == 2:
        pcm = np.column_stack(tracks)
    else:
        pcm = np.clip(tracks[0].astype(np.int32) + tracks[1], -32768, 32767).astype(np.int16)
        pcm = pcm.reshape(-1, 1)
    return pcm, bare_encode(pcm, rate, fmt)


def cpu_of(work: Callable[[], object]) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def measure(works: list[Callable[[], object]], min_cpu: float) -> list[float]:
    """Median CPU seconds of each, interleaved, at least 3 runs and ``min_cpu`` s of all."""
    for work in works:  # warm up
        work()
    runs: list[list[float]] = [[] for _ in works]
    while len(runs[0]) < 3 or sum(map(sum, runs)) < min_cpu:
        for work, times in zip(works, runs, strict=True):
            times.append(cpu_of(work))
    return [statistics.median(times) for times in runs]


def _mix(call: CallRecord, chunks: list[ChunkPackets], fmt: RecordingFormat,
         channels: int) -> None:
    mix_call(call, chunks, fmt, channels, io.BytesIO())


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def speed(seconds: int, min_cpu: float, profile: bool, formats: list[str],
          codecs: list[str]) -> list[tuple[str, str, str]]:
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "|", load_line())
    print(f"a {seconds} s two-leg call, x real time per CPU-second (median, interleaved runs); "
          f"ratio = mixer / PyAV encoding the same PCM alone (goal >= {GOAL})")
    print("  xcode = PyAV decode of the legs' chunks + that encode, no timeline (looser ceiling)")
    print(f"{'codec':<6} {'ch':<6} {'format':<5} {'encode':>8} {'xcode':>8} {'mixer':>8} "
          f"{'ratio':>6} {'/xcode':>6}  bytes")
    below: list[tuple[str, str, str]] = []
    for codec in codecs:
        call, chunks = two_leg_call(codec, seconds)
        payloads = leg_payloads(chunks)
        packets = taken_in(chunks)
        assert len(packets) == len(chunks)
        decoder = CODEC_DECODERS[codec]
        for channels in (2, 1):
            rendered, failures = render_call(call, chunks, channels)
            assert not failures, failures
            pcm, rate = rendered.samples, rendered.sample_rate
            kind = "stereo" if channels == 2 else "mono"
            for name in formats:
                fmt = FORMATS[name]
                out = io.BytesIO()
                mixed = mix_call(call, packets, fmt, channels, out)
                same = hashlib.sha256(bare_encode(pcm, rate, fmt)).hexdigest() == mixed.sha256
                xpcm, _ = bare_transcode(payloads, decoder, rate, channels, fmt)
                ceil_cpu, xcode_cpu, mix_cpu = measure([
                    functools.partial(bare_encode, pcm, rate, fmt),
                    functools.partial(bare_transcode, payloads, decoder, rate, channels, fmt),
                    functools.partial(_mix, call, packets, fmt, channels)], min_cpu)
                ratio = ceil_cpu / mix_cpu
                print(f"{codec:<6} {kind:<6} {name:<5} {seconds / ceil_cpu:7.0f}x "
                      f"{seconds / xcode_cpu:7.0f}x {seconds / mix_cpu:7.0f}x {ratio:6.2f} "
                      f"{xcode_cpu / mix_cpu:6.2f}  {'same' if same else 'DIFFER'}"
                      f"{'' if np.array_equal(xpcm, pcm) else ' (xcode PCM differs)'}",
                      flush=True)
                if ratio < GOAL:
                    below.append((codec, kind, name))
                    if profile:
                        profile_mixer(call, packets, fmt, channels, min_cpu)
    print(load_line())
    return below


STAGES = (("plan", "timeline.py", "plan_leg"), ("decode", "decode.py", "decode_into"),
          ("lay out", "render.py", "layout"), ("render", "render.py", "window"),
          ("encode", "encode.py", "write"), ("encode", "encode.py", "__exit__"),
          ("sha256", "recording.py", "_size_and_hash"))


def profile_mixer(call: CallRecord, chunks: list[ChunkPackets], fmt: RecordingFormat,
                  channels: int, min_cpu: float) -> None:
    """cProfile over enough mixer runs for ``min_cpu`` s: the share of each stage of mix_call
    (cumulative), then the functions with the most own time. cProfile's per-call overhead
    inflates the Python stages (plan) against the C ones (decode, encode)."""
    profiler = cProfile.Profile(time.process_time)
    start = time.process_time()
    profiler.enable()
    while time.process_time() - start < min_cpu:
        _mix(call, chunks, fmt, channels)
    profiler.disable()
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = (
        pstats.Stats(profiler).stats)  # type: ignore[attr-defined]
    total = next(v[3] for k, v in stats.items() if k[2] == "mix_call")
    shares: dict[str, float] = {}
    for stage, file, func in STAGES:
        cumulative = sum(v[3] for k, v in stats.items() if k[0].endswith(file) and k[2] == func)
        shares[stage] = shares.get(stage, 0.0) + cumulative / total
    print("    stages: " + "  ".join(f"{k} {v:.0%}" for k, v in shares.items())
          + f"  other {1 - sum(shares.values()):.0%}")
    own = sum(v[2] for v in stats.values())
    for (file, line, func), (_, calls, tt, _, _) in sorted(stats.items(),
                                                           key=lambda kv: -kv[1][2])[:8]:
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else "(C)"
        print(f"    {tt / own:6.1%} {calls:>7} {func[:55]:<55} {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="length of the two-leg call")
    parser.add_argument("--min-cpu", type=float, default=1.0,
                        help="CPU seconds of runs per cell (at least 3 runs each)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the mixer in every cell below the goal")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--codecs", default=",".join(CODECS))
    args = parser.parse_args()
    below = speed(args.seconds, args.min_cpu, args.profile, args.formats.split(","),
                  args.codecs.split(","))
    print(f"below {GOAL}: " + (", ".join(" ".join(b) for b in below) or "none"))


if __name__ == "__main__":
    main()
