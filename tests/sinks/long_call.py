"""A long synthetic call mixed in a process of its own, measuring what planning its timeline and
then mixing it add to the peak resident memory (`python -m tests.sinks.long_call MINUTES OUT`,
run by test_long_call.py)."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable
from pathlib import Path

from callrec.sinks.encode import recording_format
from callrec.sinks.recording import MixedRecording, mix_call, plan_call
from tests.sinks.factory import PACKET_US, new_call_key, simple_call


def vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def main(minutes: float, out: Path) -> None:
    packets = int(minutes * 60 * 1_000_000 // PACKET_US)
    near, far, record = simple_call(new_call_key(), packets=packets)
    chunks = near + far
    plan_growth = peak_growth(lambda: plan_call(record, chunks))
    mixed: list[MixedRecording] = []
    with out.open("w+b") as f:
        mix_growth = peak_growth(lambda: mixed.append(
            mix_call(record, chunks, recording_format("wav"), 2, f, out.parent)))
    print(json.dumps({"minutes": minutes, "plan_growth_kib": plan_growth,
                      "mix_growth_kib": mix_growth, "size_bytes": mixed[0].size_bytes,
                      "sha256": mixed[0].sha256, "gaps": len(mixed[0].gaps)}))


def peak_growth(step: Callable[[], object]) -> int:
    """What ``step`` adds to the process's peak resident memory (KiB)."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
    before = vm_kib("VmRSS")
    step()
    return vm_kib("VmHWM") - before


if __name__ == "__main__":
    main(float(sys.argv[1]), Path(sys.argv[2]))
