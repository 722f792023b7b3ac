"""What planning a leg gives (timeline.py): its runs of placed samples, its chunks' audio to
decode, and the chunks it knows are missing. A long call's plan is a few objects per run, not per
packet or chunk: a slot covers every packet that follows on in time and in the decoded audio."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from callrec.avro.events import GapCause, Leg
from callrec.sinks.codecs import AudioCodec
from callrec.sinks.packets import ChunkPackets


@dataclass(frozen=True, slots=True)
class Slot:
    """Decoded samples put at a place in their run: ``samples`` from ``sample`` of the leg's
    decoded audio (its chunks' samples end to end in chunk order, see ``ChunkAudio.base``). One
    slot covers every packet that follows on in both, across chunks: a run usually has one."""

    sample: int
    samples: int
    position: int


@dataclass(frozen=True, slots=True)
class RunGap:
    """Samples of a run with no audio, counted from the run's origin, with the cause."""

    start: int
    length: int
    cause: GapCause


@dataclass(frozen=True)
class MediaRun:
    """Packets of one source and codec whose RTP timestamps can be trusted relative to each other.

    ``codec`` is None when the mixer cannot decode the codec: its slots then only mark where the
    undecodable audio would have been.
    """

    codec: AudioCodec | None
    sample_rate: int
    origin_us: int
    slots: tuple[Slot, ...]
    gaps: tuple[RunGap, ...]

    @property
    def end(self) -> int:
        return max((s.position + s.samples for s in self.slots), default=0)

    @property
    def end_us(self) -> int:
        """When the run's last sample ends on the wall clock (rounded up)."""
        return self.origin_us + -(-self.end * 1_000_000 // self.sample_rate)


class ChunkAudio(NamedTuple):
    """A chunk's audio payloads joined in RTP order: one decoder call per chunk. ``pieces``
    (start, end) of the chunk's payload bytes, None when they are all audio in order. A tuple:
    planning makes one per chunk."""

    chunk_seq: int
    codec_name: str
    codec: AudioCodec | None
    source: ChunkPackets
    pieces: tuple[tuple[int, int], ...] | None
    base: int
    """Where the chunk's samples start in the leg's decoded audio."""
    samples: int
    """How many samples it decodes to (a decoder that gives another count failed)."""

    @property
    def payload(self) -> bytes:
        data = self.source.payload_bytes()
        if self.pieces is None:
            return data
        return b"".join(data[a:b] for a, b in self.pieces)


@dataclass(frozen=True)
class MissingChunks:
    """Chunks known to exist (chunk_seq proves it) that never reached the mixer."""

    before_first: int
    after_last: int
    chunk_us: int


@dataclass(frozen=True)
class PlacedLeg:
    leg: Leg
    leg_id: str
    runs: tuple[MediaRun, ...]
    chunks: tuple[ChunkAudio, ...]
    missing: MissingChunks
    lost_chunk_seqs: tuple[int, ...] = field(default=())
    shifted_runs: int = 0
    """Runs whose arrival anchor overlapped an earlier run, so were moved to follow it."""
