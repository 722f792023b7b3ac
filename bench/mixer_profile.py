"""Where the mixer's time goes, by stage, sampled by py-spy (no per-call overhead, unlike
cProfile, so Python and C stages compare fairly). Run by hand:

    .venv/bin/pip install py-spy      # a profiling tool only, not a project dependency
    .venv/bin/python bench/mixer_profile.py --codecs PCMU --formats wav

It records ``bench/mixer_speed.py`` with the same arguments and prints, over the samples inside
``mix_call`` (both channel layouts), the share of each stage and the source lines that take the
most (the innermost frame in sinks/, numpy or PyAV).
"""

from __future__ import annotations

import collections
import subprocess
import sys
import tempfile
from pathlib import Path

STAGES = {"_planned": "plan", "plan_leg": "plan", "decode_into": "decode", "layout": "lay out",
          "windows": "render", "window": "render", "write": "encode", "__exit__": "encode",
          "__enter__": "encode", "_size_and_hash": "sha256"}


def summarise(raw: Path, top: int = 12) -> None:
    stages: collections.Counter[str] = collections.Counter()
    lines: collections.Counter[str] = collections.Counter()
    total = 0
    for row in raw.read_text().splitlines():
        stack, count = row.rsplit(" ", 1)
        frames = stack.split(";")
        try:
            at = next(i for i, f in enumerate(frames) if f.startswith("mix_call "))
        except StopIteration:
            continue
        n = int(count)
        total += n
        below = frames[at + 1].split(" ")[0].split(".")[-1] if at + 1 < len(frames) else ""
        stages[STAGES.get(below, "other")] += n
        ours = [f for f in frames[at:] if "sinks/" in f or "numpy" in f or "av/" in f]
        lines[(ours[-1] if ours else frames[-1])[:90]] += n
    if not total:
        print("no samples inside mix_call")
        return
    print(f"{total} samples in mix_call; by stage: "
          + "  ".join(f"{k} {v / total:.0%}" for k, v in stages.most_common()))
    for line, n in lines.most_common(top):
        print(f"  {n / total:6.1%}  {line}")


MIXER_STAGES = (
    # (stage, a function in the stack, the file it is in); the first that matches, outermost
    # stage first, names the sample
    ("intake: read chunks", "read_chunks", "sinks/chunk_wire.py"),
    ("intake: Avro decode", "decode", "avro/codec.py"),
    ("intake: spool", "add", "sinks/chunk_spool.py"),
    ("intake: other", "_consume", "sinks/loop.py"),
    ("mix: read spilled", "_spooled_packets", "sinks/archive.py"),
    ("mix: plan", "_planned", "sinks/recording.py"),
    ("mix: decode", "decode_into", "sinks/decode.py"),
    ("mix: lay out", "layout", "sinks/render.py"),
    ("mix: sha256", "_size_and_hash", "sinks/recording.py"),
    ("mix: render+encode", "mix_call", "sinks/recording.py"),
    ("mix: other", "_mix", "sinks/archive.py"),
    ("S3 put", "put", "sinks/store.py"),
    ("announce", "publish", "callrec/eventlog.py"),
    ("Kafka fetch", "", "aiokafka/"),
    ("start ready calls", "_start_ready_calls", "sinks/loop.py"),
    ("archive: other", "archive", "sinks/archive.py"),
)


def _frame(frame: str) -> tuple[str, str]:
    """py-spy's ``Class.function (path:line)`` as (function, path)."""
    name, _, where = frame.partition(" (")
    return name.rsplit(".", 1)[-1], where


def mixer_stage(frames: list[str]) -> str:
    parsed = [_frame(f) for f in frames]
    for stage, function, path in MIXER_STAGES:
        if any((not function or name == function) and path in where for name, where in parsed):
            return stage
    return "other (asyncio, threads, GC)"


IDLE = ("_worker (concurrent/futures/thread.py", "select (selectors.py", "wait (threading.py",
        "readinto (socket.py")
"""Leaves py-spy counts as busy though the thread waits (a pool thread on its queue, epoll, a
blocking socket read: the S3 server's answer)."""


def summarise_mixer(raw: Path, what: str, top: int = 12) -> None:
    """The mixer process's samples (py-spy --threads, raw) by stage, and its hottest lines."""
    stages: collections.Counter[str] = collections.Counter()
    lines: collections.Counter[str] = collections.Counter()
    total = 0
    for row in raw.read_text().splitlines():
        stack, count = row.rsplit(" ", 1)
        frames = stack.split(";")[1:]  # the first is the thread
        if frames and "{} ({}".format(*_frame(frames[-1])).startswith(IDLE):
            continue
        n = int(count)
        total += n
        stages[mixer_stage(frames)] += n
        lines[frames[-1][:100] if frames else "?"] += n
    if not total:
        print("    no samples of the mixer process")
        return
    print(f"    py-spy of the mixer process {what}: {total / 250:.1f} s of samples (all threads, "
          "idle excluded; py-spy's own load inflates the latencies of this round)")
    for stage, n in sorted(stages.items()):
        print(f"      {n / total:6.1%}  {stage}")
    print("    hottest lines:")
    for line, n in lines.most_common(top):
        print(f"      {n / total:6.1%}  {line}")


def main() -> None:
    speed = Path(__file__).resolve().parent / "mixer_speed.py"
    with tempfile.TemporaryDirectory(prefix="mixer-profile-") as tmp:
        raw = Path(tmp) / "stacks.txt"
        subprocess.run(
            [str(Path(sys.executable).parent / "py-spy"), "record", "-r", "200", "-f", "raw",
             "-o", str(raw), "--", sys.executable, str(speed), "--min-cpu", "4", *sys.argv[1:]],
            check=True)
        summarise(raw)


if __name__ == "__main__":
    main()
