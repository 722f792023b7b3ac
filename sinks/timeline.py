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
from dataclasses import replace

from callrec.avro.events import AudioChunk, GapCause
from callrec.sinks.entries import Packet, chunk_audio, extend, unwrap
from callrec.sinks.packets import (
    MAX_PACKET_US,
    RTP_SEQ_MODULUS,
    RTP_TS_MODULUS,
    ChunkPackets,
    InMemoryPayloads,
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


class _Irregular(Exception):
    """A span met a packet it overlaps or reorders with: plan the leg packet by packet."""


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
    packets = extend(ordered, spans)
    audio_chunks = tuple(chunk_audio(ordered, packets))
    runs, shifted = _without_overlap(_build_run(run, present) for run in _split_runs(packets))
    seen = sorted(present)
    lost = tuple(s for s in range(seen[0], seen[-1] + 1) if s not in present)
    tail = max(0, (last_chunk_seq if last_chunk_seq is not None else seen[-1]) - seen[-1])
    missing = MissingChunks(seen[0], tail, _chunk_us(runs, len(seen)))
    return PlacedLeg(first.leg, first.leg_id, runs, audio_chunks, missing, lost, shifted)


class _Run:
    """Packets of one source being collected: the highest-sequence packet to extend from, and
    the arrival anchor so far (when the sample at timestamp ``ts0`` was spoken, at the latest)."""

    __slots__ = ("head", "key", "origin_us", "packets", "ts0")

    def __init__(self, key: tuple[int, str], first: Packet) -> None:
        self.key = key
        self.head = first
        self.packets = [first]
        self.ts0 = first.ext_ts
        self.origin_us = first.anchor_us

    def spoken_us(self, p: Packet) -> int:
        return self.origin_us + (p.ext_ts - self.ts0) * 1_000_000 // p.clock_rate

    def join(self, p: Packet) -> None:
        self.packets.append(p)
        if p.ext_seq > self.head.last_seq:
            self.head = p
        spoken = (p.ext_ts - self.ts0) * 1_000_000 // p.clock_rate
        self.origin_us = min(self.origin_us, p.anchor_us - spoken)


def _split_runs(packets: list[Packet]) -> Iterable[list[Packet]]:
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


def _straggler_of(runs: list[_Run], p: Packet) -> _Run | None:
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


def _follows(head: Packet, p: Packet, pause: bool = True) -> bool:
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


def _build_run(packets: list[Packet], present_chunks: set[int]) -> MediaRun:
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
    previous: Packet | None = None
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


def _estimate_unknown_lengths(audio: list[Packet]) -> None:
    """An unknown codec's packet lasts until the next one's timestamp (the last one, as long)."""
    step = audio[0].clock_rate * DEFAULT_PACKET_US // 1_000_000
    for p, nxt in itertools.pairwise(audio):
        if nxt.ext_ts > p.ext_ts:
            step = nxt.ext_ts - p.ext_ts
        p.samples = step
    audio[-1].samples = step


def _gap_cause(
    before: Packet, after: Packet, other_seqs: list[int], present_chunks: set[int]
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
