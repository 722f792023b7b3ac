"""Waveform peaks of a recording, computed once on the server and cached by content hash.

The page draws the loudest sample of each channel per bucket; sending ~1,600 bytes beats making
every browser download and decode the whole recording before it can show anything.
"""

from __future__ import annotations

import io

import av
import numpy as np
import numpy.typing as npt


def peaks(samples: npt.NDArray[np.int16], buckets: int) -> npt.NDArray[np.uint8]:
    """(frames, channels) int16 -> (channels, buckets) loudness 0..255 (pure)."""
    frames, channels = samples.shape
    out = np.zeros((channels, buckets), dtype=np.uint8)
    if frames == 0:
        return out
    edges = np.linspace(0, frames, buckets + 1).astype(np.int64)
    magnitude = np.abs(samples.astype(np.int32))
    for b in range(buckets):
        lo, hi = edges[b], max(edges[b + 1], edges[b] + 1)
        if lo >= frames:
            break
        out[:, b] = np.minimum(255, magnitude[lo:hi].max(axis=0) * 255 // 32767)
    return out


def decode(data: bytes) -> npt.NDArray[np.int16]:
    """Any format the mixer writes -> (frames, channels) int16."""
    parts: list[npt.NDArray[np.int16]] = []
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        channels = stream.codec_context.channels
        resampler = av.AudioResampler(format="s16", layout="stereo" if channels > 1 else "mono")
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                parts.append(np.asarray(out.to_ndarray(), dtype=np.int16).reshape(-1, channels))
    if not parts:
        return np.zeros((0, 1), dtype=np.int16)
    return np.concatenate(parts)
