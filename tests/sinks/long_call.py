"""A long synthetic call mixed in a process of its own the way the worker's archiver does, from
its chunks as the disk spool holds them (Kafka values), measuring what mixing adds to the peak
resident memory (`python -m tests.sinks.long_call MINUTES OUT`, run by test_long_call.py; the
same call is what bench/mixer_memory.py measures at several lengths)."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from callrec.avro import codec
from callrec.avro.events import AudioChunk, CallRecord, Leg
from callrec.sinks.chunk_spool import RECORD_HEADER
from callrec.sinks.encode import recording_format
from tests.sinks.factory import PACKET_US, T0_US, call_record, chunked, leg_summary, rtp_stream

PER_CHUNK = 10
KEY = "Long:1"
LEGS = ((Leg.NEAR_END, "near-0", 0x1234, 1000), (Leg.FAR_END, "far-0", 0x5678, 777))


def chunks_of(minutes: float) -> Iterator[AudioChunk]:
    """The call's chunks as they arrive (near and far alternating), made one at a time."""
    for n in range(int(minutes * 60 * 1_000_000 // PACKET_US) // PER_CHUNK):
        for index, (leg, leg_id, ssrc, ts0) in enumerate(LEGS):
            packets = rtp_stream(PER_CHUNK, start_us=T0_US + n * PER_CHUNK * PACKET_US,
                                 ts0=ts0 + n * PER_CHUNK * 160, seq0=n * PER_CHUNK % 65536,
                                 ssrc=ssrc, seed=n * 2 + index)
            [chunk] = chunked(packets, KEY, leg, leg_id, per_chunk=PER_CHUNK, first_seq=n)
            yield chunk


def leg_payload(minutes: float, index: int) -> bytes:
    """One leg's payloads in order (channel ``index``'s G.711 bytes)."""
    return b"".join(p.payload for c in chunks_of(minutes) if c.leg == LEGS[index][0]
                    for p in c.packets)


def write_spool(minutes: float, path: Path) -> int:
    """The call's chunks as the worker's disk spool holds them; returns chunks per leg."""
    count = 0
    with path.open("wb") as f:
        for offset, chunk in enumerate(chunks_of(minutes)):
            value = codec.encode(chunk)
            f.write(RECORD_HEADER.pack(offset, len(value)))
            f.write(value)
            count = chunk.chunk_seq + 1
    return count


def record_of(chunks_per_leg: int) -> CallRecord:
    legs = []
    for leg, leg_id, _, _ in LEGS:  # the CallRecord's view of the legs, from one chunk each
        [first] = chunked(rtp_stream(1), KEY, leg, leg_id)
        legs.append(leg_summary([first]).model_copy(update={"last_chunk_seq": chunks_per_leg - 1}))
    return call_record(KEY, legs, duration_us=chunks_per_leg * PER_CHUNK * PACKET_US)


def vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def peak_growth(step: Callable[[], object]) -> int:
    """What ``step`` adds to the process's peak resident memory (KiB)."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
    before = vm_kib("VmRSS")
    step()
    return vm_kib("VmHWM") - before


def main(minutes: float, out: Path) -> None:
    # Imported here: bench/mixer_memory.py imports this module under an older tree too.
    from callrec.sinks.archive import mix_spooled
    from callrec.sinks.chunk_spool import SpooledCall

    spool = out.with_suffix(".spool")
    chunks_per_leg = write_spool(minutes, spool)
    record = record_of(chunks_per_leg)
    entries = SpooledCall(spool, spool.stat().st_size, [])
    mixed = []
    with out.open("w+b") as f:
        growth = peak_growth(lambda: mixed.append(
            mix_spooled(record, entries, recording_format("wav"), 2, f, out.parent)))
    spool.unlink()
    print(json.dumps({"minutes": minutes, "chunks": 2 * chunks_per_leg, "mix_growth_kib": growth,
                      "size_bytes": mixed[0].size_bytes, "sha256": mixed[0].sha256,
                      "gaps": len(mixed[0].gaps)}))


if __name__ == "__main__":
    main(float(sys.argv[1]), Path(sys.argv[2]))
