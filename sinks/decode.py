"""PyAV adapter: a leg's chunk payloads -> 16-bit samples, one decoder call per chunk.

One decoder context per leg and codec lives across the leg's chunks, because G.722 and G.729
carry predictor state from packet to packet; after a failure the context is rebuilt.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import av
import numpy as np

from callrec.sinks.codecs import AudioCodec
from callrec.sinks.render import Key, Pcm
from callrec.sinks.timeline import ChunkAudio, PlacedLeg


@dataclass(frozen=True)
class DecodeFailure:
    leg_id: str
    chunk_seq: int
    reason: str


class DecodedFile:
    """Decoded chunks kept in an unlinked temporary file, read back a chunk at a time: a call
    of hours costs its index in memory, not its samples (render.Samples)."""

    def __init__(self, directory: Path | None = None) -> None:
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        self.file = tempfile.TemporaryFile(dir=directory)
        self.index: dict[Key, tuple[int, int] | None] = {}
        self.size = 0

    def __enter__(self) -> DecodedFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.file.close()

    def put(self, key: Key, samples: Pcm | None) -> None:
        if samples is None:
            self.index[key] = None
            return
        data = samples.astype("<i2", copy=False).tobytes()
        self.file.write(data)
        self.index[key] = (self.size, len(samples))
        self.size += len(data)

    def length(self, key: Key) -> int | None:
        entry = self.index.get(key)
        return None if entry is None else entry[1]

    def read(self, key: Key) -> Pcm:
        entry = self.index[key]
        assert entry is not None
        self.file.flush()
        data = os.pread(self.file.fileno(), entry[1] * 2, entry[0])
        return np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)


def decode_legs(
    legs: Iterable[PlacedLeg],
) -> tuple[dict[tuple[str, int], Pcm | None], list[DecodeFailure]]:
    """Samples per (leg_id, chunk_seq) in memory; a chunk that fails maps to None."""
    decoded: dict[tuple[str, int], Pcm | None] = {}
    return decoded, decode_into(legs, decoded.__setitem__)


def decode_into(
    legs: Iterable[PlacedLeg], put: Callable[[Key, Pcm | None], None]
) -> list[DecodeFailure]:
    """Hand each chunk's samples to ``put`` in leg order (None for a chunk that fails, which is
    also reported)."""
    failures: list[DecodeFailure] = []
    for leg in legs:
        contexts: dict[str, av.AudioCodecContext] = {}
        for chunk in leg.chunks:
            try:
                put((leg.leg_id, chunk.chunk_seq), _decode_chunk(chunk, contexts))
            except ValueError as e:  # av.error.FFmpegError subclasses ValueError
                contexts.pop(chunk.codec_name, None)
                put((leg.leg_id, chunk.chunk_seq), None)
                failures.append(DecodeFailure(leg.leg_id, chunk.chunk_seq, str(e)))
    return failures


def _decode_chunk(chunk: ChunkAudio, contexts: dict[str, av.AudioCodecContext]) -> Pcm:
    codec = chunk.codec
    if codec is None:
        raise ValueError(f"codec {chunk.codec_name!r} is not one the mixer decodes")
    context = contexts.get(chunk.codec_name)
    if context is None:
        context = contexts[chunk.codec_name] = _context(codec)
    frames = context.decode(av.Packet(chunk.payload))
    samples = (
        np.concatenate([f.to_ndarray()[0] for f in frames]) if frames else np.zeros(0, np.int16)
    )
    expected = codec.samples(len(chunk.payload))
    if len(samples) != expected:
        raise ValueError(f"{codec.name} gave {len(samples)} samples where {expected} were due")
    return samples.astype(np.int16, copy=False)


def _context(codec: AudioCodec) -> av.AudioCodecContext:
    context = cast(av.AudioCodecContext, av.CodecContext.create(codec.ffmpeg_decoder, "r"))
    context.sample_rate = codec.sample_rate
    context.layout = "mono"
    return context
