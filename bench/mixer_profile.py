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
