"""What the mixer must know about each RTP audio codec to place its samples without decoding.

G.722's RTP clock is 8 kHz although it carries 16 kHz audio (RFC 3551 section 4.5.2, a mistake
kept for compatibility), so the RTP clock and the decoded rate are separate fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class AudioCodec:
    name: str
    ffmpeg_decoder: str
    sample_rate: int
    frame_bytes: int
    frame_samples: int

    def audio_bytes(self, payload_len: int) -> int:
        """Bytes of a payload that hold whole audio frames; the rest (a G.729B SID) is not audio."""
        return payload_len - payload_len % self.frame_bytes

    def samples(self, audio_bytes: int) -> int:
        return audio_bytes // self.frame_bytes * self.frame_samples


CODECS: dict[str, AudioCodec] = {
    c.name: c
    for c in (
        AudioCodec("PCMU", "pcm_mulaw", 8000, 1, 1),
        AudioCodec("PCMA", "pcm_alaw", 8000, 1, 1),
        AudioCodec("G722", "g722", 16000, 1, 2),
        AudioCodec("G729", "g729", 8000, 10, 80),
    )
}


@cache
def codec_named(name: str) -> AudioCodec | None:
    """The codec for a contract codec name, None if the mixer cannot decode it (asked per
    chunk: remembered)."""
    return CODECS.get(name.upper().replace(".", "").replace("-", ""))
