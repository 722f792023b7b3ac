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
from dataclasses import dataclass, replace

from callrec.avro.events import AudioChunk, GapCause
from callrec.sinks.codecs import AudioCodec, codec_named
from callrec.sinks.packets import (
    MAX_PACKET_US,
    RTP_SEQ_MODULUS,
    RTP_TS_MODULUS,
    ChunkPackets,
    InMemoryPayloads,
    Span,
    compact,
)
from callrec.sinks.placed import ChunkAudio, MediaRun, MissingChunks, PlacedLeg, RunGap, Slot

__all__ = ["RTP_SEQ_MODULUS", "RTP_TS_MODULUS", "ChunkAudio", "MediaRun", "PlacedLeg", "Slot",
           "plan_leg", "unwrap"]
PAUSE_AGREES_US = 1_000_000
"""A timestamp jump the sequence does not explain is kept if arrival saw a pause this close."""
REORDER_WINDOW = 1024
"""How far back (in sequence numbers, ~20 s of 20 ms packets) a late packet may still belong."""
DEFAULT_CHUNK_US = 200_000
DEFAULT_PACKET_US = 20_000


@dataclass(slots=True)
class _Packet:
    """One RTP packet, or a span of ``count`` contiguous ones (packets.Span) planned as one: the
    first packet's sequence, timestamp and arrival, the last one's, and the span's anchor."""

    chunk_seq: int
    ssrc: int
    ext_seq: int
    ext_ts: int
    arrival_us: int
    audio: bool
    codec: AudioCodec | None
    codec_name: str
    clock_rate: int
    count: int = 1
    last_ts: int = 0
    last_arrival_us: int = 0
    anchor_us: int = 0
    """min of arrival - (ts - ext_ts) over the packets, in microseconds."""
    offset: int = 0
    """Where the packet's payload starts in its chunk's payload bytes."""
    size: int = 0
    """Payload bytes (of the whole span)."""
    first_sample: int = 0
    samples: int = 0
    chunks: int = 1
    """Chunks planned as this one entry: spans that follow each other exactly (_extend)."""

    @property
    def last_seq(self) -> int:
        return self.ext_seq + self.count - 1


class _Irregular(Exception):
    """A span met a packet it overlaps or reorders with: plan the leg packet by packet."""


def unwrap(previous: int | None, value: int, modulus: int) -> int:
    """Extend a wrapping counter (RTP timestamp or sequence) to the value nearest the last."""
    if previous is None:
        return value
    delta = (value - previous) % modulus
    if delta >= modulus // 2:
        delta -= modulus
    return previous + delta


def plan_leg(
    chunks: Iterable[AudioChunk | ChunkPackets], last_chunk_seq: int | None = None
) -> PlacedLeg | None:
    """Place one leg's packets; ``last_chunk_seq`` (from the CallRecord) reveals lost tail.

    Chunks that are spans (packets.py) are planned one entry per chunk; where a span would not
    come out exactly as its packets one by one would (a packet of it duplicated or reordered
    across chunks), the leg is planned again packet by packet."""
    by_seq = {c.chunk_seq: c for c in chunks}
    if not by_seq:
        return None
    memory = InMemoryPayloads()
    ordered = [c if isinstance(c, ChunkPackets) else compact(c, memory)
               for c in (by_seq[s] for s in sorted(by_seq))]
    try:
        return _plan(ordered, last_chunk_seq, spans=True)
    except _Irregular:
        return _plan(ordered, last_chunk_seq, spans=False)


def _plan(ordered: list[ChunkPackets], last_chunk_seq: int | None, spans: bool) -> PlacedLeg:
    first = ordered[0]
    present = {c.chunk_seq for c in ordered}
    packets = _extend(ordered, spans)
    audio_chunks = tuple(_chunk_audio(ordered, packets))
    runs, shifted = _without_overlap(_build_run(run, present) for run in _split_runs(packets))
    seen = sorted(present)
    lost = tuple(s for s in range(seen[0], seen[-1] + 1) if s not in present)
    tail = max(0, (last_chunk_seq if last_chunk_seq is not None else seen[-1]) - seen[-1])
    missing = MissingChunks(seen[0], tail, _chunk_us(runs, len(seen)))
    return PlacedLeg(first.leg, first.leg_id, runs, audio_chunks, missing, lost, shifted)


def _extend(chunks: Sequence[ChunkPackets], spans: bool) -> list[_Packet]:
    """The chunks' packets in arrival order, sequence and timestamp unwrapped; a span is one
    entry, and so are spans of consecutive chunks that follow each other exactly (the next
    packet's sequence and timestamp, the same source, codec and packet), as they would join
    one run and one slot packet by packet: a call's plan is a few entries, not one per chunk."""
    last_ts: dict[int, int] = {}
    last_seq: dict[int, int] = {}
    out: list[_Packet] = []
    spanned: tuple[_Packet, Span] | None = None  # the last entry, if spans, and its last span
    for chunk in chunks:
        codec = codec_named(chunk.codec)
        span = chunk.span
        if spans and span is not None and codec is not None:
            ext_ts = unwrap(last_ts.get(span.ssrc), span.ts, RTP_TS_MODULUS)
            ext_seq = unwrap(last_seq.get(span.ssrc), span.seq, RTP_SEQ_MODULUS)
            end_ts = ext_ts + (span.count - 1) * span.ticks
            last_ts[span.ssrc], last_seq[span.ssrc] = end_ts, ext_seq + span.count - 1
            if spanned is not None and _continues(spanned, chunk, span, ext_seq, ext_ts):
                _merge(spanned[0], span, ext_ts, end_ts)
                spanned = spanned[0], span
                continue
            out.append(_Packet(chunk.chunk_seq, span.ssrc, ext_seq, ext_ts, span.first_us, True,
                               codec, chunk.codec, chunk.clock_rate, span.count, end_ts,
                               span.last_us, span.anchor_us, 0, span.size * span.count))
            spanned = out[-1], span
            continue
        spanned = None
        offset = 0
        for p in chunk.packet_rows():
            ext_ts = unwrap(last_ts.get(p.ssrc), p.ts, RTP_TS_MODULUS)
            ext_seq = unwrap(last_seq.get(p.ssrc), p.seq, RTP_SEQ_MODULUS)
            last_ts[p.ssrc], last_seq[p.ssrc] = ext_ts, ext_seq
            audio = p.payload_type == chunk.payload_type and (
                codec is None or codec.audio_bytes(p.size) > 0
            )
            out.append(_Packet(chunk.chunk_seq, p.ssrc, ext_seq, ext_ts, p.arrival_us, audio,
                               codec, chunk.codec, chunk.clock_rate, 1, ext_ts, p.arrival_us,
                               p.arrival_us, offset, p.size))
            offset += p.size
    return out


def _continues(spanned: tuple[_Packet, Span], chunk: ChunkPackets, span: Span, ext_seq: int,
               ext_ts: int) -> bool:
    """Whether ``span`` follows the spans of entry ``spanned[0]`` (the last one ``spanned[1]``)
    exactly: what joining them one by one would put in one run and one slot."""
    entry, last = spanned
    return (span.ssrc == entry.ssrc and chunk.codec == entry.codec_name
            and chunk.clock_rate == entry.clock_rate and span.size == last.size
            and span.ticks == last.ticks and ext_seq == entry.last_seq + 1
            and ext_ts == entry.last_ts + span.ticks)


def _merge(entry: _Packet, span: Span, ext_ts: int, end_ts: int) -> None:
    """Extend ``entry`` by the span that follows it (its anchor exact: spans exist only for
    clocks dividing 1 s)."""
    spoken_us = (ext_ts - entry.ext_ts) * 1_000_000 // entry.clock_rate
    entry.anchor_us = min(entry.anchor_us, span.anchor_us - spoken_us)
    entry.count += span.count
    entry.last_ts = end_ts
    entry.last_arrival_us = span.last_us
    entry.size += span.size * span.count
    entry.chunks += 1


def _chunk_audio(chunks: Sequence[ChunkPackets], packets: list[_Packet]) -> Iterable[ChunkAudio]:
    """Each chunk's audio payloads in sequence order, and where each packet's samples fall in
    the leg's decoded audio (``_Packet.first_sample``)."""
    by_chunk: dict[int, list[_Packet]] = {}
    for p in packets:
        if p.audio:
            by_chunk.setdefault(p.chunk_seq, []).append(p)
    base = 0
    following = iter(chunks)
    for chunk in following:
        members = by_chunk.get(chunk.chunk_seq, [])
        if len(members) == 1 and members[0].chunks > 1:  # spans of chunks: each one whole
            entry = members[0]
            assert entry.codec is not None
            entry.first_sample = base
            for c in itertools.chain((chunk,), itertools.islice(following, entry.chunks - 1)):
                samples = entry.codec.samples(entry.codec.audio_bytes(c.payload_length()))
                yield ChunkAudio(c.chunk_seq, c.codec, entry.codec, c, None, base, samples)
                base += samples
            entry.samples = base - entry.first_sample
            continue
        if len(members) > 1:
            members.sort(key=_by_seq)
        pieces: list[tuple[int, int]] = []
        sample = base
        for p in members:
            size = p.size
            if p.codec is not None:
                size = p.codec.audio_bytes(size)
                p.samples = p.codec.samples(size)
            p.first_sample = sample
            sample += p.samples
            pieces.append((p.offset, p.offset + size))
        if members:
            whole = len(members) == 1 and members[0].count > 1  # a span: its payload as it is
            yield ChunkAudio(chunk.chunk_seq, chunk.codec, members[0].codec, chunk,
                             None if whole else tuple(pieces), base, sample - base)
            base = sample


def _by_seq(p: _Packet) -> int:
    return p.ext_seq


class _Run:
    """Packets of one source being collected: the highest-sequence packet to extend from, and
    the arrival anchor so far (when the sample at timestamp ``ts0`` was spoken, at the latest)."""

    __slots__ = ("head", "key", "origin_us", "packets", "ts0")

    def __init__(self, key: tuple[int, str], first: _Packet) -> None:
        self.key = key
        self.head = first
        self.packets = [first]
        self.ts0 = first.ext_ts
        self.origin_us = first.anchor_us

    def spoken_us(self, p: _Packet) -> int:
        return self.origin_us + (p.ext_ts - self.ts0) * 1_000_000 // p.clock_rate

    def join(self, p: _Packet) -> None:
        self.packets.append(p)
        if p.ext_seq > self.head.last_seq:
            self.head = p
        spoken = (p.ext_ts - self.ts0) * 1_000_000 // p.clock_rate
        self.origin_us = min(self.origin_us, p.anchor_us - spoken)


def _split_runs(packets: list[_Packet]) -> Iterable[list[_Packet]]:
    """Cut the arrival-ordered packets only where the RTP stream itself breaks.

    A packet stays in the current run of its source while its timestamp follows from its sequence
    number however late it arrived (a busy recorder or a buffering network must not move audio).
    A new run starts with a new SSRC or codec, or a timestamp jump the sequence does not explain
    and the arrival clock does not confirm; a late packet may still join an older run. A span
    joins as its packets would one by one: past the head of the current run, or starting a run.
    """
    runs: list[_Run] = []
    for p in packets:
        if not p.audio:
            owner = next((r for r in reversed(runs) if r.key[0] == p.ssrc), None)
            if owner is not None:
                owner.packets.append(p)
            continue
        key = (p.ssrc, p.codec_name)
        current = runs[-1] if runs else None
        if current is not None and current.key == key and _follows(current.head, p):
            if p.count > 1 and p.ext_seq <= current.head.last_seq:
                raise _Irregular
            current.join(p)
            continue
        older = _straggler_of(runs, p)
        if older is not None:
            if p.count > 1:
                raise _Irregular
            older.join(p)
            continue
        runs.append(_Run(key, p))
    return (r.packets for r in runs)


def _straggler_of(runs: list[_Run], p: _Packet) -> _Run | None:
    """The earlier run a late packet belongs to: same source, RTP-consistent, and (if it is past
    that run's head) spoken before the next run began, not a resumption after it."""
    key = (p.ssrc, p.codec_name)
    for i in range(len(runs) - 2, -1, -1):
        run = runs[i]
        if run.key != key or not _follows(run.head, p, pause=False):
            continue
        if p.ext_seq < run.head.last_seq or run.spoken_us(p) < runs[i + 1].origin_us:
            return run
    return None


def _follows(head: _Packet, p: _Packet, pause: bool = True) -> bool:
    """Whether ``p`` belongs to the stream ``head`` is in, judged by RTP first, arrival last.

    Sequence and timestamp moving together (each sequence step a plausible packet length, either
    way for a reordered packet) is the RTP truth. A forward timestamp jump larger than that (the
    sender sent nothing for a while: DTX, a pause) is kept when ``pause`` allows and the arrival
    clock saw the same pause; anything else is a break in the stream. (A span is judged by its
    first packet against the head's last.)
    """
    steps = p.ext_seq - head.last_seq
    ticks = p.ext_ts - head.last_ts
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
    arrived_us = p.arrival_us - head.last_arrival_us
    return abs(arrived_us - paused_us) <= PAUSE_AGREES_US


def _sign(n: int) -> int:
    return 1 if n > 0 else -1


def _build_run(packets: list[_Packet], present_chunks: set[int]) -> MediaRun:
    audio = sorted((p for p in packets if p.audio), key=lambda p: (p.ext_ts, p.ext_seq))
    head = audio[0]
    codec, clock = head.codec, head.clock_rate
    rate = codec.sample_rate if codec else clock
    ts0 = head.ext_ts
    origin_us = min(p.anchor_us - (p.ext_ts - ts0) * 1_000_000 // clock for p in audio)
    if codec is None:
        _estimate_unknown_lengths(audio)
    other_seqs = sorted(p.ext_seq for p in packets if not p.audio)
    slots: list[Slot] = []
    gaps: list[RunGap] = []
    previous: _Packet | None = None
    for p in audio:
        if previous is not None and p.ext_ts <= previous.last_ts and (
            p.count > 1 or previous.count > 1
        ):
            raise _Irregular  # a packet inside a span (a duplicate across chunks)
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
            and last.sample + last.samples == p.first_sample
            and last.position + last.samples == position
        ):  # the next packet, in the leg's audio as in time: one slice instead of two
            slots[-1] = Slot(last.sample, last.samples + p.samples, last.position)
        else:
            slots.append(Slot(p.first_sample, p.samples, position))
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
    skipped = after.ext_seq - before.last_seq - 1
    others = bisect.bisect_left(other_seqs, after.ext_seq) - bisect.bisect_right(
        other_seqs, before.last_seq
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
