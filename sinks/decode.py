"""PyAV adapter: a leg's chunk payloads -> 16-bit samples, one decoder call per chunk.

One decoder context per leg and codec lives across the leg's chunks, because G.722 and G.729
carry predictor state from packet to packet; after a failure the context is rebuilt.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import av
import numpy as np

from callrec.sinks.codecs import AudioCodec
from callrec.sinks.render import Pcm
from callrec.sinks.timeline import ChunkAudio, PlacedLeg


@dataclass(frozen=True)
class DecodeFailure:
    leg_id: str
    chunk_seq: int
    reason: str


def decode_legs(
    legs: Iterable[PlacedLeg],
) -> tuple[dict[tuple[str, int], Pcm | None], list[DecodeFailure]]:
    """Samples per (leg_id, chunk_seq); a chunk that fails maps to None and is reported."""
    decoded: dict[tuple[str, int], Pcm | None] = {}
    failures: list[DecodeFailure] = []
    for leg in legs:
        contexts: dict[str, av.AudioCodecContext] = {}
        for chunk in leg.chunks:
            try:
                decoded[(leg.leg_id, chunk.chunk_seq)] = _decode_chunk(chunk, contexts)
            except ValueError as e:  # av.error.FFmpegError subclasses ValueError
                contexts.pop(chunk.codec_name, None)
                decoded[(leg.leg_id, chunk.chunk_seq)] = None
                failures.append(DecodeFailure(leg.leg_id, chunk.chunk_seq, str(e)))
    return decoded, failures


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
