"""PyAV adapter: a leg's chunk payloads -> 16-bit samples, one decoder call per chunk.

One decoder context per leg and codec lives across the leg's chunks, because G.722 and G.729
carry predictor state from packet to packet; after a failure the context is rebuilt. G.711 has
no state: a leg's G.711 chunks that follow each other are decoded together, by one decoder call
over their joined payloads, and written in one piece.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import av
import numpy as np

from callrec.sinks.codecs import AudioCodec
from callrec.sinks.placed import ChunkAudio, PlacedLeg
from callrec.sinks.render import Pcm


@dataclass(frozen=True)
class DecodeFailure:
    leg_id: str
    chunk_seq: int
    reason: str


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
        for chunks in _joined(leg.chunks):
            try:
                put(leg.leg_id, chunks, _decode(chunks, contexts))
            except ValueError as e:  # av.error.FFmpegError subclasses ValueError
                contexts.pop(chunks[0].codec_name, None)
                put(leg.leg_id, chunks, None)
                failures += [DecodeFailure(leg.leg_id, c.chunk_seq, str(e)) for c in chunks]
    return failures


STATELESS = frozenset({"pcm_mulaw", "pcm_alaw"})
"""Decoders with no state from packet to packet, one sample per byte (G.711)."""
JOINED = 512
"""G.711 chunks decoded at once at most (~100 s of audio, 0.8 MB of payload and 1.6 MB of
samples): a long call's leg is never joined whole."""


def _joined(chunks: Sequence[ChunkAudio]) -> Iterator[Sequence[ChunkAudio]]:
    """The leg's chunks in order: G.711 chunks of one law that follow each other in the leg's
    audio (and whose payloads are exactly their samples) in runs, every other chunk alone."""
    run: list[ChunkAudio] = []
    for chunk in chunks:
        codec = chunk.codec
        stateless = codec is not None and codec.ffmpeg_decoder in STATELESS
        if run and (not stateless or chunk.codec is not run[0].codec or len(run) >= JOINED
                    or run[-1].base + run[-1].samples != chunk.base):
            yield run
            run = []
        if stateless:
            run.append(chunk)
        else:
            yield (chunk,)
    if run:
        yield run


def _decode(chunks: Sequence[ChunkAudio], contexts: dict[str, av.AudioCodecContext]) -> Pcm:
    """One decoder call over the chunks' joined payloads: a G.711 run costs about what one chunk
    does (FFmpeg's table lookup, ~3x numpy's ``take``), and its samples come out in one piece."""
    first = chunks[0]
    codec = first.codec
    if codec is None:
        raise ValueError(f"codec {first.codec_name!r} is not one the mixer decodes")
    payload = first.payload if len(chunks) == 1 else b"".join([c.payload for c in chunks])
    context = contexts.get(first.codec_name)
    if context is None:
        context = contexts[first.codec_name] = _context(codec)
    parts = [_frame_samples(f) for f in context.decode(av.Packet(payload))]
    samples = parts[0] if len(parts) == 1 else np.concatenate([np.zeros(0, np.int16), *parts])
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


def _context(codec: AudioCodec) -> av.AudioCodecContext:
    context = cast(av.AudioCodecContext, av.CodecContext.create(codec.ffmpeg_decoder, "r"))
    context.sample_rate = codec.sample_rate
    context.layout = "mono"
    return context
