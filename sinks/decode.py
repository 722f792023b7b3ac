"""PyAV adapter: a leg's chunk payloads -> 16-bit samples, one decoder call per chunk.

One decoder context per leg and codec lives across the leg's chunks, because G.722 and G.729
carry predictor state from packet to packet; after a failure the context is rebuilt. G.711 has
no state and cannot fail: a leg's G.711 chunks that follow each other are decoded together, by
one table lookup over their joined payloads, and written in one piece.
"""

from __future__ import annotations

import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import av
import numpy as np

from callrec.sinks.codecs import AudioCodec
from callrec.sinks.placed import ChunkAudio, PlacedLeg
from callrec.sinks.render import Pcm, read_upsampled


@dataclass(frozen=True)
class DecodeFailure:
    leg_id: str
    chunk_seq: int
    reason: str


IN_MEMORY_BYTES = 2 << 20
"""Decoded samples a call keeps in memory before they go to a file (~1 minute of a two-leg
8 kHz call): creating the file costs ~0.3 ms, a tenth of a short call's whole mix and nothing
beside a long one's, whose samples must not sit in memory."""


class DecodedFile:
    """Each leg's decoded audio end to end (``ChunkAudio.base``), in memory up to
    ``in_memory`` bytes, past that in an unlinked temporary file, read back a window at a time:
    a call of hours costs two numbers per chunk in memory, not its samples (render.Samples)."""

    def __init__(self, directory: Path | None = None, in_memory: int = IN_MEMORY_BYTES) -> None:
        where = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            where = str(directory)
        self.file = cast(BinaryIO, tempfile.SpooledTemporaryFile(in_memory, dir=where))
        self.legs: dict[str, _LegAudio] = {}
        self.size = 0

    def __enter__(self) -> DecodedFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.file.close()

    def put(self, leg_id: str, chunks: Sequence[ChunkAudio], samples: Pcm | None) -> None:
        """A leg's chunks in order (``decode_into``), one after the other in its audio, and
        their samples end to end; None for chunks that did not decode."""
        leg = self.legs.get(leg_id)
        if leg is None:
            leg = self.legs[leg_id] = _LegAudio(self.size)
        leg.starts.extend(c.base for c in chunks)
        leg.ends.extend(c.base + c.samples for c in chunks)
        first, last = chunks[0], chunks[-1]
        self.size = max(self.size, leg.at + (last.base + last.samples) * 2)
        if samples is None:
            leg.failed.extend((c.base, c.base + c.samples) for c in chunks)
            return
        self.file.seek(leg.at + first.base * 2)
        self.file.write(np.ascontiguousarray(samples, dtype="<i2").data)

    def failed(self, leg_id: str, a: int, b: int) -> list[tuple[int, int]]:
        """The parts of the leg's samples a:b that did not decode."""
        leg = self.legs.get(leg_id)
        if leg is None:
            return [(a, b)]
        return [(max(a, s), min(b, e)) for s, e in leg.failed if s < b and e > a]

    def read(self, leg_id: str, a: int, n: int, factor: int) -> Pcm:
        """``n`` samples from ``a`` of the leg's audio upsampled by ``factor``."""
        leg = self.legs[leg_id]

        def read(start: int, count: int) -> Pcm:
            self.file.seek(leg.at + start * 2)
            data = self.file.read(count * 2)
            return np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)

        return read_upsampled(read, leg.starts, leg.ends, a, n, factor)


class _LegAudio:
    """Where a leg's audio starts in the file, its chunks' extents and its failed ones."""

    __slots__ = ("at", "ends", "failed", "starts")

    def __init__(self, at: int) -> None:
        self.at = at
        self.starts = array("q")
        self.ends = array("q")
        self.failed: list[tuple[int, int]] = []


def decode_legs(
    legs: Iterable[PlacedLeg],
) -> tuple[dict[tuple[str, int], Pcm | None], list[DecodeFailure]]:
    """Samples per (leg_id, chunk_seq) in memory; a chunk that fails maps to None."""
    decoded: dict[tuple[str, int], Pcm | None] = {}

    def put(leg_id: str, chunks: Sequence[ChunkAudio], samples: Pcm | None) -> None:
        at = 0
        for chunk in chunks:
            part = None if samples is None else samples[at:at + chunk.samples]
            decoded[(leg_id, chunk.chunk_seq)] = part
            at += chunk.samples

    return decoded, decode_into(legs, put)


Put = Callable[[str, Sequence[ChunkAudio], "Pcm | None"], None]


def decode_into(legs: Iterable[PlacedLeg], put: Put) -> list[DecodeFailure]:
    """Hand each chunk's samples to ``put`` in leg and chunk order, G.711 chunks that follow
    each other together (None for a chunk that fails, which is also reported)."""
    failures: list[DecodeFailure] = []
    for leg in legs:
        contexts: dict[str, av.AudioCodecContext] = {}
        for chunks in _tabled_together(leg.chunks):
            if len(chunks) > 1:
                put(leg.leg_id, chunks, _table_decode(chunks))
                continue
            chunk = chunks[0]
            try:
                put(leg.leg_id, chunks, _decode_chunk(chunk, contexts))
            except ValueError as e:  # av.error.FFmpegError subclasses ValueError
                contexts.pop(chunk.codec_name, None)
                put(leg.leg_id, chunks, None)
                failures.append(DecodeFailure(leg.leg_id, chunk.chunk_seq, str(e)))
    return failures


TABLED_TOGETHER = 512
"""G.711 chunks decoded at once at most (~100 s of audio, 0.8 MB of payload and 1.6 MB of
samples): a long call's leg is never joined whole."""


def _tabled_together(chunks: Sequence[ChunkAudio]) -> Iterator[Sequence[ChunkAudio]]:
    """The leg's chunks in order: G.711 chunks of one law that follow each other in the leg's
    audio (and whose payloads are exactly their samples) in runs, every other chunk alone."""
    run: list[ChunkAudio] = []
    for chunk in chunks:
        codec = chunk.codec
        tabled = codec is not None and _g711_table(codec) is not None
        if run and (not tabled or chunk.codec is not run[0].codec or len(run) >= TABLED_TOGETHER
                    or run[-1].base + run[-1].samples != chunk.base):
            yield run
            run = []
        if tabled:
            run.append(chunk)
        else:
            yield (chunk,)
    if run:
        yield run


def _table_decode(chunks: Sequence[ChunkAudio]) -> Pcm:
    codec = chunks[0].codec
    assert codec is not None
    table = _g711_table(codec)
    assert table is not None
    payload = b"".join([c.payload for c in chunks])
    samples: Pcm = _look_up(table, payload)
    assert len(samples) == sum(c.samples for c in chunks)  # one sample per byte
    return samples


def _decode_chunk(chunk: ChunkAudio, contexts: dict[str, av.AudioCodecContext]) -> Pcm:
    codec = chunk.codec
    if codec is None:
        raise ValueError(f"codec {chunk.codec_name!r} is not one the mixer decodes")
    payload = chunk.payload
    table = _g711_table(codec)
    if table is not None:  # one sample per byte, no state: a table lookup is the whole decoder
        return _look_up(table, payload)
    context = contexts.get(chunk.codec_name)
    if context is None:
        context = contexts[chunk.codec_name] = _context(codec)
    parts = [_frame_samples(f) for f in context.decode(av.Packet(payload))]
    samples = np.concatenate(parts) if parts else np.zeros(0, np.int16)
    expected = codec.samples(len(payload))
    if len(samples) != expected:
        raise ValueError(f"{codec.name} gave {len(samples)} samples where {expected} were due")
    return samples


def _frame_samples(frame: av.AudioFrame) -> Pcm:
    """A mono 16-bit frame's samples straight from its buffer (to_ndarray costs more than the
    G.729 decoder's 10 ms frames are worth)."""
    if frame.format.name in ("s16", "s16p"):
        samples: Pcm = np.frombuffer(memoryview(frame.planes[0]), dtype=np.int16)
        return samples[: frame.samples]
    whole: Pcm = frame.to_ndarray()[0].astype(np.int16)
    return whole


_TABLES: dict[str, Pcm] = {}


LOOK_UP_BLOCK = 1 << 16


def _look_up(table: Pcm, payload: bytes) -> Pcm:
    """Each payload byte's sample. ``take`` is ~2.5x faster than indexing the table with the
    bytes, but widens its indices to 8 bytes each first: a block at a time, that is 0.5 MB."""
    indices = np.frombuffer(payload, dtype=np.uint8)
    samples: Pcm = np.empty(len(indices), np.int16)
    for a in range(0, len(indices), LOOK_UP_BLOCK):
        table.take(indices[a : a + LOOK_UP_BLOCK], out=samples[a : a + LOOK_UP_BLOCK])
    return samples


def _g711_table(codec: AudioCodec) -> Pcm | None:
    """G.711's 256 samples, once, from FFmpeg's own decoder: the table is bit-exact with it by
    construction (tests/sinks/factory.py checks both laws against the ITU-T expansion)."""
    if codec.ffmpeg_decoder not in ("pcm_mulaw", "pcm_alaw"):
        return None
    table = _TABLES.get(codec.name)
    if table is None:
        frames = _context(codec).decode(av.Packet(bytes(range(256))))
        table = _TABLES[codec.name] = np.concatenate([_frame_samples(f) for f in frames])
        assert len(table) == 256
    return table


def _context(codec: AudioCodec) -> av.AudioCodecContext:
    context = cast(av.AudioCodecContext, av.CodecContext.create(codec.ffmpeg_decoder, "r"))
    context.sample_rate = codec.sample_rate
    context.layout = "mono"
    return context
