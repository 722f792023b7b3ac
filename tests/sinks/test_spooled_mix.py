"""The archiver's path for a long call: mixed from the spool a record at a time (spilled chunks
read back from disk, each reduced to its packets' summary and its payloads put in a file), the
recording is the one mixing the chunks in memory gives, byte for byte, and a chunk that did not
decode is found again in the spool for its dead letter. Pure: no Kafka, no S3 (~1 s)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from callrec.avro import codec
from callrec.sinks import archive
from callrec.sinks.archive import mix_spooled
from callrec.sinks.chunk_spool import ChunkSpool
from callrec.sinks.chunk_wire import MEMORY
from callrec.sinks.decode import decode_into
from callrec.sinks.decoded import DecodedAudio
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


def test_decoded_samples_read_the_same_held_in_memory_and_from_the_file(tmp_path: Path) -> None:
    near, far, record = simple_call(new_call_key(), packets=300, far_delay_us=40_000)
    near[3] = near[3].model_copy(update={"codec": "iLBC"})  # near's audio: two pieces and a hole
    legs = plan_call(record, near + far)
    held_bytes = 3 * 160 * 10 * 2  # near's first piece (3 chunks) only: the rest goes to disk
    with (DecodedAudio(tmp_path) as held, DecodedAudio(tmp_path, in_memory=held_bytes) as split,
          DecodedAudio(tmp_path, in_memory=0) as filed):
        for decoded in (held, split, filed):
            assert len(decode_into(legs, decoded.put)) == 1
        assert held.file is None and split.file is not None and filed.file is not None
        assert [len(split.legs[leg.leg_id].held) for leg in legs] == [0, 1]  # far, near
        for leg in legs:
            length = leg.chunks[-1].base + leg.chunks[-1].samples
            whole = held.read(leg.leg_id, 0, length, 1)
            assert len(whole) == length and whole.any()
            for a, n in ((0, length), (4700, 200), (length - 7, 7)):  # across every edge
                np.testing.assert_array_equal(split.read(leg.leg_id, a, n, 1), whole[a : a + n])
                np.testing.assert_array_equal(filed.read(leg.leg_id, a, n, 1), whole[a : a + n])
