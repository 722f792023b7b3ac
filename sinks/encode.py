"""PyAV adapter: the call's samples, block by block -> the bytes of a recording file.

Encoding is deterministic (FFmpeg's bitexact flags: no random Ogg serial, no version string that
varies) so a second worker mixing the same call produces the same bytes and the same sha256.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import av
import numpy as np

from callrec.sinks.errors import UnsupportedFormat
from callrec.sinks.render import Pcm


@dataclass(frozen=True)
class RecordingFormat:
    name: str
    extension: str
    container: str
    encoder: str
    sample_format: str
    content_type: str
    options: tuple[tuple[str, str], ...] = ()


FORMATS: dict[str, RecordingFormat] = {
    f.name: f
    for f in (
        RecordingFormat("wav", "wav", "wav", "pcm_s16le", "s16", "audio/wav"),
        RecordingFormat("flac", "flac", "flac", "flac", "s16", "audio/flac"),
        RecordingFormat(
            "opus", "opus", "ogg", "libopus", "s16", "audio/ogg",
            (("application", "voip"), ("compression_level", "5")),
        ),
        RecordingFormat("mp3", "mp3", "mp3", "libmp3lame", "s16p", "audio/mpeg"),
    )
}
BITRATE_PER_CHANNEL = {"opus": 16_000, "mp3": 32_000}
DEFAULT_FRAME = 4096


def recording_format(name: str) -> RecordingFormat:
    try:
        return FORMATS[name.lower()]
    except KeyError:
        raise UnsupportedFormat(f"format {name!r} is not one of {sorted(FORMATS)}") from None


class Encoder:
    """Encode a recording block by block into a seekable file (WAV writes its sizes into the
    header at the end): the frames the codec gets are the same however the blocks are cut, so
    the bytes equal those of one whole-call encode."""

    def __init__(self, out: BinaryIO, sample_rate: int, channels: int,
                 fmt: RecordingFormat) -> None:
        self.out, self.sample_rate, self.channels, self.fmt = out, sample_rate, channels, fmt
        self.pending = np.zeros((0, channels), dtype=np.int16)
        self.written = 0

    def __enter__(self) -> Encoder:
        fmt = self.fmt
        with self._translated():
            self.container = av.open(self.out, "w", format=fmt.container,
                                     options={"fflags": "+bitexact"})
            stream: Any = self.container.add_stream(
                fmt.encoder, rate=self.sample_rate,
                options={"flags": "+bitexact", **dict(fmt.options)},
            )
            stream.layout = "stereo" if self.channels == 2 else "mono"
            stream.format = fmt.sample_format
            if fmt.name in BITRATE_PER_CHANNEL:
                stream.bit_rate = BITRATE_PER_CHANNEL[fmt.name] * self.channels
            stream.codec_context.open()
            self.stream = stream
            self.step = stream.codec_context.frame_size or DEFAULT_FRAME
            self.frame_format = av.AudioFormat(fmt.sample_format)
            self.frame_layout = av.AudioLayout(stream.layout.name)
        return self

    def write(self, block: Pcm) -> None:
        """Queue samples; every whole codec frame is encoded now, the rest waits."""
        pending = np.concatenate([self.pending, block]) if len(self.pending) else block
        whole = len(pending) - len(pending) % self.step
        with self._translated():
            for start in range(0, whole, self.step):
                self._encode(pending[start : start + self.step])
        self.pending = pending[whole:].copy()

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                with self._translated():
                    if len(self.pending):
                        self._encode(self.pending)
                    self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()

    def _encode(self, block: Pcm) -> None:
        frame = _frame(block, self.frame_format, self.frame_layout)
        frame.sample_rate = self.sample_rate
        frame.pts = self.written
        self.written += len(block)
        self.container.mux(self.stream.encode(frame))

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except (ValueError, OSError) as e:  # av.error.FFmpegError subclasses ValueError
            raise UnsupportedFormat(
                f"cannot encode {self.fmt.name} at {self.sample_rate} Hz: {e}") from e


def _frame(block: Pcm, sample_format: av.AudioFormat, layout: av.AudioLayout) -> av.AudioFrame:
    """The block's samples copied once into a new frame (``from_ndarray`` does the same after
    checks that cost about as much again per codec frame: Opus's are 20 ms)."""
    frame = av.AudioFrame(format=sample_format, layout=layout, samples=len(block))
    if sample_format.is_planar:  # one plane per channel
        for channel, plane in enumerate(frame.planes):
            plane.update(np.ascontiguousarray(block[:, channel]))  # type: ignore[arg-type]
    else:  # packed: channels interleaved in one plane
        frame.planes[0].update(np.ascontiguousarray(block))  # type: ignore[arg-type]  # any buffer
    return frame
