"""The archiver's path for a long call: mixed from the spool a record at a time (spilled chunks
read back from disk, each reduced to its packets' summary and its payloads put in a file), the
recording is the one mixing the chunks in memory gives, byte for byte, and a chunk that did not
decode is found again in the spool for its dead letter. Pure: no Kafka, no S3 (~1 s)."""

from __future__ import annotations

import itertools
from pathlib import Path

from callrec.avro import codec
from callrec.sinks import archive
from callrec.sinks.archive import mix_spooled
from callrec.sinks.chunk_spool import ChunkSpool
from callrec.sinks.chunk_wire import MEMORY
from callrec.sinks.decode import DecodedFile, decode_into
from callrec.sinks.encode import recording_format
from callrec.sinks.packets import compact
from callrec.sinks.recording import mix_call, plan_call
from tests.sinks.factory import new_call_key, simple_call


def test_a_call_mixed_from_its_disk_spool_is_the_recording_of_its_chunks(tmp_path: Path) -> None:
    key = new_call_key()
    near, far, record = simple_call(key, packets=300, far_delay_us=40_000)
    near[3] = near[3].model_copy(update={"codec": "iLBC"})  # the mixer cannot decode it
    arrived = [c for pair in itertools.zip_longest(near, far) for c in pair if c is not None]
    spool = ChunkSpool(tmp_path / "spool", memory_budget=20_000, disk_budget=1 << 30)
    values = {}
    for offset, chunk in enumerate(arrived):
        values[offset] = codec.encode(chunk)
        spool.add(key, offset, values[offset], compact(chunk, MEMORY))  # as the worker takes it
    assert spool.disk_bytes > 0 and spool.memory_bytes > 0  # both halves of the spool are read
    entries = spool.stream(key)
    spool.add(key, 999, values[0], compact(arrived[0], MEMORY))  # after the snapshot: not mixed

    fmt = recording_format("flac")
    with (tmp_path / "a").open("w+b") as a, (tmp_path / "b").open("w+b") as b:
        spooled = mix_spooled(record, entries, fmt, 2, a, tmp_path / "mix")
        direct = mix_call(record, arrived, fmt, 2, b, tmp_path / "mix")
        assert a.read() == b.read()
    assert spooled == direct
    assert [(f.leg_id, f.chunk_seq) for f in spooled.failures] == [("near-0", 3)]
    offset = arrived.index(near[3])
    assert archive._spooled_chunks(entries, {("near-0", 3)}) == {
        ("near-0", 3): (offset, values[offset])}
    assert len(list(entries)) == len(arrived)


def test_decoded_samples_read_the_same_from_memory_and_from_the_file(tmp_path: Path) -> None:
    near, far, record = simple_call(new_call_key(), packets=300, far_delay_us=40_000)
    legs = plan_call(record, near + far)
    with DecodedFile(tmp_path) as held, DecodedFile(tmp_path, in_memory=1000) as spilled:
        decode_into(legs, held.put)
        decode_into(legs, spilled.put)
        # SpooledTemporaryFile's own flag: the second one has gone to disk, the first has not
        assert spilled.file._rolled and not held.file._rolled  # type: ignore[attr-defined]
        for leg in legs:
            length = leg.chunks[-1].base + leg.chunks[-1].samples
            whole = held.read(leg.leg_id, 0, length, 1)
            assert len(whole) == length and whole.any()
            assert (spilled.read(leg.leg_id, 0, length, 1) == whole).all()
