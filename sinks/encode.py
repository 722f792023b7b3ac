"""PyAV adapter: the call's samples -> the bytes of a recording file.

Encoding is deterministic (FFmpeg's bitexact flags: no random Ogg serial, no version string that
varies) so a second worker mixing the same call produces the same bytes and the same sha256.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

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


def encode(samples: Pcm, sample_rate: int, fmt: RecordingFormat) -> bytes:
    """Encode (frames, channels) int16 samples into ``fmt``'s container, in memory."""
    channels = samples.shape[1]
    out = io.BytesIO()
    try:
        with av.open(out, "w", format=fmt.container, options={"fflags": "+bitexact"}) as container:
            stream: Any = container.add_stream(
                fmt.encoder, rate=sample_rate, options={"flags": "+bitexact", **dict(fmt.options)}
            )
            stream.layout = "stereo" if channels == 2 else "mono"
            stream.format = fmt.sample_format
            if fmt.name in BITRATE_PER_CHANNEL:
                stream.bit_rate = BITRATE_PER_CHANNEL[fmt.name] * channels
            stream.codec_context.open()
            step = stream.codec_context.frame_size or DEFAULT_FRAME
            for start in range(0, len(samples), step):
                frame = _frame(samples[start : start + step], fmt.sample_format, stream.layout)
                frame.sample_rate = sample_rate
                frame.pts = start
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    except (ValueError, OSError) as e:  # av.error.FFmpegError subclasses ValueError
        raise UnsupportedFormat(f"cannot encode {fmt.name} at {sample_rate} Hz: {e}") from e
    return out.getvalue()


def _frame(block: Pcm, sample_format: str, layout: Any) -> av.AudioFrame:
    if sample_format.endswith("p"):  # planar: one row per channel
        data = np.ascontiguousarray(block.T)
    else:  # packed: channels interleaved in one row
        data = block.reshape(1, -1)
    return av.AudioFrame.from_ndarray(data, format=sample_format, layout=layout.name)
