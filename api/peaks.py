"""Waveform peaks of a recording, computed once on the server and cached by content hash.

The page draws the loudest sample of each channel per bucket; sending ~1,600 bytes beats making
every browser download and decode the whole recording before it can show anything. The
recording is decoded as it streams from the store, so an 8-hour call costs the grid and one
decoded frame of memory, never the whole file or its samples.
"""

from __future__ import annotations

from typing import Protocol

import av
import numpy as np
import numpy.typing as npt


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class PeakGrid:
    """Running loudest sample per (channel, bucket) over frames arriving in order (pure).

    Frame ``i`` of ``total`` falls in bucket ``i * buckets // total``; frames past ``total``
    (a duration that was rounded down) count in the last bucket."""

    def __init__(self, channels: int, buckets: int, total_frames: int) -> None:
        self.buckets = buckets
        self.total = max(1, total_frames)
        self.frames = 0
        self.grid = np.zeros((channels, buckets), dtype=np.uint8)

    def add(self, samples: npt.NDArray[np.int16]) -> None:
        """(frames, channels) int16, the next frames of the recording."""
        count = samples.shape[0]
        if count == 0:
            return
        index = np.minimum(self.buckets - 1,
                           np.arange(self.frames, self.frames + count) * self.buckets
                           // self.total)
        self.frames += count
        starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
        loudest = np.maximum.reduceat(np.abs(samples.astype(np.int32)), starts, axis=0)
        level = np.minimum(255, loudest * 255 // 32767).astype(np.uint8).T
        columns = index[starts]
        self.grid[:, columns] = np.maximum(self.grid[:, columns], level)


def peaks(samples: npt.NDArray[np.int16], buckets: int) -> npt.NDArray[np.uint8]:
    """(frames, channels) int16 -> (channels, buckets) loudness 0..255 (pure)."""
    grid = PeakGrid(samples.shape[1], buckets, samples.shape[0])
    grid.add(samples)
    return grid.grid


def stream_peaks(source: Readable, buckets: int, duration_ms: int) -> npt.NDArray[np.uint8]:
    """Decode any format the mixer writes as it is read (no seeking) into a peak grid; the
    duration (the read model's) places each frame before the last one has been read."""
    with av.open(source, mode="r") as container:
        stream = container.streams.audio[0]
        channels = min(2, stream.codec_context.channels)
        rate = stream.codec_context.sample_rate
        total = duration_ms * rate // 1000 if duration_ms > 0 else int(
            (stream.duration or 0) * (stream.time_base or 0) * rate)
        resampler = av.AudioResampler(format="s16", layout="stereo" if channels > 1 else "mono",
                                      rate=rate)
        grid = PeakGrid(channels, buckets, total)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                grid.add(np.asarray(out.to_ndarray(), dtype=np.int16).reshape(-1, channels))
        for out in resampler.resample(None):
            grid.add(np.asarray(out.to_ndarray(), dtype=np.int16).reshape(-1, channels))
    return grid.grid

