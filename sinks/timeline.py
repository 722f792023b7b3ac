"""One leg's chunks -> where each packet's samples belong, and why the holes between them exist.

Inside a run of one RTP source the RTP timestamp is the truth: it survives jitter, reordering,
loss and any delay on the way (a busy recorder, a network that buffers and then bursts), so lost
packets become silence of exactly their length and late packets land where they were spoken. A
run ends only where the RTP stream itself breaks: a new SSRC (a transfer), a codec change, or a
timestamp jump the sequence numbers do not explain and the arrival clock does not confirm. Only
there does the arrival wall clock place audio: each run is anchored through its least-delayed
packet, the best estimate of when its first sample was spoken (the two legs of a call are aligned
the same way), and a run whose anchor would overlap the run before it follows that run instead,
counted in ``PlacedLeg.shifted_runs``.

Nothing here decodes audio: a packet's length follows from its payload size and the codec.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from callrec.avro.events import AudioChunk, GapCause, Leg, RtpPacket
from callrec.sinks.codecs import AudioCodec, codec_named

RTP_TS_MODULUS = 1 << 32
RTP_SEQ_MODULUS = 1 << 16
PAUSE_AGREES_US = 1_000_000
"""A timestamp jump the sequence does not explain is kept if arrival saw a pause this close."""
MAX_PACKET_US = 200_000
"""The longest packet (ptime) a sequence step may stand for; more is a jump, not a packet."""
REORDER_WINDOW = 1024
"""How far back (in sequence numbers, ~20 s of 20 ms packets) a late packet may still belong."""
DEFAULT_CHUNK_US = 200_000
DEFAULT_PACKET_US = 20_000


@dataclass(frozen=True)
class Slot:
    """One packet's decoded samples: a slice of its chunk's audio, put at a place in its run."""

    chunk_seq: int
    first_sample: int
    samples: int
    position: int


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class ChunkAudio:
    """A chunk's audio payloads joined in RTP order: one decoder call per chunk."""

    chunk_seq: int
    codec_name: str
    codec: AudioCodec | None
    payload: bytes


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


@dataclass(slots=True)
class _Packet:
    chunk_seq: int
    packet: RtpPacket
    ext_ts: int
    ext_seq: int
    audio: bool
    codec: AudioCodec | None
    codec_name: str
    clock_rate: int
    first_sample: int = 0
    samples: int = 0


def unwrap(previous: int | None, value: int, modulus: int) -> int:
    """Extend a wrapping counter (RTP timestamp or sequence) to the value nearest the last."""
    if previous is None:
        return value
    delta = (value - previous) % modulus
    if delta >= modulus // 2:
        delta -= modulus
    return previous + delta


def plan_leg(
    chunks: Iterable[AudioChunk], last_chunk_seq: int | None = None
) -> PlacedLeg | None:
    """Place one leg's packets; ``last_chunk_seq`` (from the CallRecord) reveals lost tail."""
    by_seq = {c.chunk_seq: c for c in chunks}
    if not by_seq:
        return None
    ordered = [by_seq[s] for s in sorted(by_seq)]
    first = ordered[0]
    packets = _extend(ordered)
    audio_chunks = tuple(_chunk_audio(ordered, packets))
    runs, shifted = _without_overlap(_build_run(run, set(by_seq)) for run in _split_runs(packets))
    seen = sorted(by_seq)
    lost = tuple(s for s in range(seen[0], seen[-1] + 1) if s not in by_seq)
    tail = max(0, (last_chunk_seq if last_chunk_seq is not None else seen[-1]) - seen[-1])
    missing = MissingChunks(seen[0], tail, _chunk_us(runs, len(seen)))
    return PlacedLeg(first.leg, first.leg_id, runs, audio_chunks, missing, lost, shifted)


def _extend(chunks: Sequence[AudioChunk]) -> list[_Packet]:
    last_ts: dict[int, int] = {}
    last_seq: dict[int, int] = {}
    out: list[_Packet] = []
    for chunk in chunks:
        codec = codec_named(chunk.codec)
        for p in chunk.packets:
            ext_ts = unwrap(last_ts.get(p.ssrc), p.rtp_timestamp, RTP_TS_MODULUS)
            ext_seq = unwrap(last_seq.get(p.ssrc), p.rtp_seq, RTP_SEQ_MODULUS)
            last_ts[p.ssrc], last_seq[p.ssrc] = ext_ts, ext_seq
            audio = p.payload_type == chunk.payload_type and (
                codec is None or codec.audio_bytes(len(p.payload)) > 0
            )
            out.append(
                _Packet(chunk.chunk_seq, p, ext_ts, ext_seq, audio, codec, chunk.codec,
                        chunk.clock_rate)
            )
    return out


def _chunk_audio(chunks: Sequence[AudioChunk], packets: list[_Packet]) -> Iterable[ChunkAudio]:
    """Join each chunk's audio payloads in sequence order and note each packet's sample slice."""
    by_chunk: dict[int, list[_Packet]] = {}
    for p in packets:
        if p.audio:
            by_chunk.setdefault(p.chunk_seq, []).append(p)
    for chunk in chunks:
        members = sorted(by_chunk.get(chunk.chunk_seq, []), key=lambda p: p.ext_seq)
        parts: list[bytes] = []
        offset = 0
        for p in members:
            payload = p.packet.payload
            if p.codec is not None:
                payload = payload[: p.codec.audio_bytes(len(payload))]
                p.samples = p.codec.samples(len(payload))
            p.first_sample = offset
            offset += p.samples
            parts.append(payload)
        if members:
            yield ChunkAudio(chunk.chunk_seq, chunk.codec, members[0].codec, b"".join(parts))


class _Run:
    """Packets of one source being collected: the highest-sequence packet to extend from, and
    the arrival anchor so far (when the sample at timestamp ``ts0`` was spoken, at the latest)."""

    __slots__ = ("head", "key", "origin_us", "packets", "ts0")

    def __init__(self, key: tuple[int, str], first: _Packet) -> None:
        self.key = key
        self.head = first
        self.packets = [first]
        self.ts0 = first.ext_ts
        self.origin_us = first.packet.arrival_time_us

    def spoken_us(self, p: _Packet) -> int:
        return self.origin_us + (p.ext_ts - self.ts0) * 1_000_000 // p.clock_rate

    def join(self, p: _Packet) -> None:
        self.packets.append(p)
        if p.ext_seq > self.head.ext_seq:
            self.head = p
        self.origin_us += min(0, p.packet.arrival_time_us - self.spoken_us(p))


def _split_runs(packets: list[_Packet]) -> Iterable[list[_Packet]]:
    """Cut the arrival-ordered packets only where the RTP stream itself breaks.

    A packet stays in the current run of its source while its timestamp follows from its sequence
    number however late it arrived (a busy recorder or a buffering network must not move audio).
    A new run starts with a new SSRC or codec, or a timestamp jump the sequence does not explain
    and the arrival clock does not confirm; a late packet may still join an older run.
    """
    runs: list[_Run] = []
    for p in packets:
        if not p.audio:
            owner = next((r for r in reversed(runs) if r.key[0] == p.packet.ssrc), None)
            if owner is not None:
                owner.packets.append(p)
            continue
        key = (p.packet.ssrc, p.codec_name)
        current = runs[-1] if runs else None
        if current is not None and current.key == key and _follows(current.head, p):
            current.join(p)
            continue
        older = _straggler_of(runs, p)
        if older is not None:
            older.join(p)
            continue
        runs.append(_Run(key, p))
    return (r.packets for r in runs)


def _straggler_of(runs: list[_Run], p: _Packet) -> _Run | None:
    """The earlier run a late packet belongs to: same source, RTP-consistent, and (if it is past
    that run's head) spoken before the next run began, not a resumption after it."""
    key = (p.packet.ssrc, p.codec_name)
    for i in range(len(runs) - 2, -1, -1):
        run = runs[i]
        if run.key != key or not _follows(run.head, p, pause=False):
            continue
        if p.ext_seq < run.head.ext_seq or run.spoken_us(p) < runs[i + 1].origin_us:
            return run
    return None


def _follows(head: _Packet, p: _Packet, pause: bool = True) -> bool:
    """Whether ``p`` belongs to the stream ``head`` is in, judged by RTP first, arrival last.

    Sequence and timestamp moving together (each sequence step a plausible packet length, either
    way for a reordered packet) is the RTP truth. A forward timestamp jump larger than that (the
    sender sent nothing for a while: DTX, a pause) is kept when ``pause`` allows and the arrival
    clock saw the same pause; anything else is a break in the stream.
    """
    steps = p.ext_seq - head.ext_seq
    ticks = p.ext_ts - head.ext_ts
    if steps == 0:
        return ticks == 0  # a duplicate, dropped when the run is built
    if steps < -REORDER_WINDOW:
        return False
    longest = abs(steps) * p.clock_rate * MAX_PACKET_US // 1_000_000
    if 0 < ticks * _sign(steps) <= longest:
        return True
    if not pause or steps < 0 or ticks <= 0:
        return False
    paused_us = ticks * 1_000_000 // p.clock_rate
    arrived_us = p.packet.arrival_time_us - head.packet.arrival_time_us
    return abs(arrived_us - paused_us) <= PAUSE_AGREES_US


def _sign(n: int) -> int:
    return 1 if n > 0 else -1


def _build_run(packets: list[_Packet], present_chunks: set[int]) -> MediaRun:
    audio = sorted((p for p in packets if p.audio), key=lambda p: (p.ext_ts, p.ext_seq))
    head = audio[0]
    codec, clock = head.codec, head.clock_rate
    rate = codec.sample_rate if codec else clock
    ts0 = head.ext_ts
    origin_us = min(
        p.packet.arrival_time_us - (p.ext_ts - ts0) * 1_000_000 // clock for p in audio
    )
    if codec is None:
        _estimate_unknown_lengths(audio)
    other_seqs = sorted(p.ext_seq for p in packets if not p.audio)
    slots: list[Slot] = []
    gaps: list[RunGap] = []
    previous: _Packet | None = None
    for p in audio:
        if previous is not None and p.ext_ts == previous.ext_ts:
            continue  # a duplicate the recorder did not catch
        position = (p.ext_ts - ts0) * rate // clock
        if slots:
            end = slots[-1].position + slots[-1].samples
            if position > end and previous is not None:
                cause = _gap_cause(previous, p, other_seqs, present_chunks)
                gaps.append(RunGap(end, position - end, cause))
        last = slots[-1] if slots else None
        if (
            last is not None
            and last.chunk_seq == p.chunk_seq
            and last.first_sample + last.samples == p.first_sample
            and last.position + last.samples == position
        ):  # the next packet in the same chunk: one slice instead of two
            slots[-1] = Slot(p.chunk_seq, last.first_sample, last.samples + p.samples,
                             last.position)
        else:
            slots.append(Slot(p.chunk_seq, p.first_sample, p.samples, position))
        previous = p
    return MediaRun(codec, rate, origin_us, tuple(slots), tuple(gaps))


def _without_overlap(runs: Iterable[MediaRun]) -> tuple[tuple[MediaRun, ...], int]:
    """Runs in time order, none starting before the one before it ended: every sample is kept.

    Two runs of one leg cannot both be playing at once; if their arrival anchors say so, the
    anchor is what is wrong (a packet delayed in a burst), so the later run follows the earlier.
    """
    placed: list[MediaRun] = []
    shifted = 0
    end_us: int | None = None
    for run in sorted(runs, key=lambda r: r.origin_us):
        if end_us is not None and run.origin_us < end_us:
            run = replace(run, origin_us=end_us)
            shifted += 1
        placed.append(run)
        end_us = max(end_us or run.end_us, run.end_us)
    return tuple(placed), shifted


def _estimate_unknown_lengths(audio: list[_Packet]) -> None:
    """An unknown codec's packet lasts until the next one's timestamp (the last one, as long)."""
    step = audio[0].clock_rate * DEFAULT_PACKET_US // 1_000_000
    for p, nxt in itertools.pairwise(audio):
        if nxt.ext_ts > p.ext_ts:
            step = nxt.ext_ts - p.ext_ts
        p.samples = step
    audio[-1].samples = step


def _gap_cause(
    before: _Packet, after: _Packet, other_seqs: list[int], present_chunks: set[int]
) -> GapCause:
    """Missing sequence numbers mean loss; a contiguous sequence means the sender sent no audio."""
    skipped = after.ext_seq - before.ext_seq - 1
    others = bisect.bisect_left(other_seqs, after.ext_seq) - bisect.bisect_right(
        other_seqs, before.ext_seq
    )
    if skipped - others <= 0:
        return GapCause.NO_AUDIO
    between = range(before.chunk_seq + 1, after.chunk_seq)
    if any(s not in present_chunks for s in between):
        return GapCause.LOST_CHUNKS
    return GapCause.LOST_PACKETS


def _chunk_us(runs: Sequence[MediaRun], chunk_count: int) -> int:
    """How long one chunk of this leg lasts, to size gaps of chunks never seen."""
    samples = sum(sum(s.samples for s in r.slots) * 1_000_000 // r.sample_rate for r in runs)
    if chunk_count <= 1 or samples <= 0:
        return DEFAULT_CHUNK_US
    return max(1, samples // chunk_count)
