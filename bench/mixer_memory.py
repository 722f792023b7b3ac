"""Memory of a long call on the archiver's path, run by hand: `.venv/bin/python
bench/mixer_memory.py [--minutes 10 20 40]` (about a minute on a loaded 2-core box).

For each length a stereo G.711 call is written as the worker's disk spool holds it (Kafka values
with their offsets, near and far chunks as they arrive: tests/sinks/long_call.py), then a fresh
process mixes it the way the archiver does and reports what that added to its peak resident
memory (VmHWM growth) and its CPU time: ``sinks.archive.mix_spooled``, or, with an older tree
first on ``PYTHONPATH``, what its archiver did (every value decoded into a list, then
``mix_call``). Printed: growth per call-minute (the slope between the lengths) projected to an
8-hour call, and as a ratio to a ceiling of the same run: the call's rendered PCM (the WAV's
size), what a whole-call render holds at least.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The repo (for tests.sinks) goes after any tree put first on PYTHONPATH, so an older
# tree's callrec can be measured with this script.
sys.path.insert(1 + len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
                str(Path(__file__).resolve().parents[1]))

from callrec.avro import codec
from callrec.avro.events import AudioChunk
from callrec.sinks.chunk_spool import RECORD_HEADER
from callrec.sinks.encode import recording_format
from tests.sinks.long_call import peak_growth, record_of, write_spool


def child(spool: Path, chunks_per_leg: int) -> None:
    """Mix the spooled call as this tree's archiver does; print the growth and CPU."""
    record = record_of(chunks_per_leg)
    fmt = recording_format("wav")
    try:
        from callrec.sinks.archive import mix_spooled
        from callrec.sinks.chunk_spool import SpooledCall
    except ImportError:  # an older tree: what its Archiver._mix did
        from callrec.sinks.recording import mix_call

        def mix(out: object) -> object:
            data = spool.read_bytes()
            values, pos = [], 0
            while pos < len(data):
                offset, length = RECORD_HEADER.unpack_from(data, pos)
                pos += RECORD_HEADER.size
                values.append((offset, data[pos : pos + length], None))
                pos += length
            chunks = [c for _, v, _ in values if isinstance(c := codec.decode(v), AudioChunk)]
            return mix_call(record, chunks, fmt, 2, out, spool.parent)  # type: ignore[arg-type]
    else:
        def mix(out: object) -> object:
            entries = SpooledCall(spool, spool.stat().st_size, [])
            return mix_spooled(record, entries, fmt, 2, out, spool.parent)  # type: ignore[arg-type]

    mixed: list[object] = []
    cpu = time.process_time()
    with tempfile.TemporaryFile(dir=spool.parent) as out:
        growth = peak_growth(lambda: mixed.append(mix(out)))
    print(json.dumps({"growth_kib": growth, "cpu_s": time.process_time() - cpu,
                      "wav_bytes": mixed[0].size_bytes}))  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 20, 40])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), int(args.child[1]))
        return
    one, five, _ = os.getloadavg()
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
          f"| load {one:.2f} {five:.2f} on {os.cpu_count()} cores")
    rows = []
    with tempfile.TemporaryDirectory(prefix="mixer-memory-") as tmp:
        for minutes in args.minutes:
            spool = Path(tmp) / f"{minutes}.spool"
            chunks_per_leg = write_spool(minutes, spool)
            run = subprocess.run([sys.executable, __file__, "--child", str(spool),
                                  str(chunks_per_leg)], capture_output=True, text=True,
                                 check=False)
            if run.returncode:
                sys.exit(run.stderr[-3000:])
            got = json.loads(run.stdout)
            size = spool.stat().st_size
            spool.unlink()
            rows.append((minutes, got["growth_kib"] / 1024))
            print(f"{minutes:5.0f} min: peak growth {got['growth_kib'] / 1024:7.1f} MB = "
                  f"{got['growth_kib'] * 1024 / got['wav_bytes']:5.2f} x its PCM "
                  f"({got['wav_bytes'] / 2**20:.0f} MB; spool {size / 2**20:.0f} MB), "
                  f"{got['growth_kib'] * 1024 / (2 * chunks_per_leg):5.0f} B per chunk; mix "
                  f"{got['cpu_s']:.1f} CPU s = {minutes * 60 / got['cpu_s']:.0f}x real time "
                  "per core", flush=True)
    if len(rows) > 1:
        (m0, g0), (m1, g1) = rows[0], rows[-1]
        slope = (g1 - g0) / (m1 - m0)
        pcm_gb = 480 * 60 * 8000 * 4 / 2**30
        print(f"growth per call-minute {slope:.2f} MB -> an 8-hour call: "
              f"{(g0 + slope * (480 - m0)) / 1024:.2f} GB (its PCM: {pcm_gb:.2f} GB)")
    one, five, _ = os.getloadavg()
    print(f"load {one:.2f} {five:.2f}")


if __name__ == "__main__":
    main()
