"""Planned legs + decoded chunks -> the call's samples (near left, far right) and its gap list.

Every stretch of a channel that no decoded packet covers is a gap, and each gap says why: the
cause a run recorded (lost packets, no audio sent, lost chunks), a chunk that did not decode, the
pause between two segments of a side (CUCM's hold: a new INVITE pair), or a side that never had a
leg at all. A pause between two runs of one leg is NO_AUDIO: late or bursty packets never make a
HOLD, and the mixer is not told when an in-dialog re-INVITE put the leg on hold.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from callrec.avro.events import Gap, GapCause, Leg
from callrec.sinks.timeline import MediaRun, PlacedLeg

DEFAULT_RATE = 8000
SIDES = (Leg.NEAR_END, Leg.FAR_END)
LOSS_CAUSES = frozenset(
    {GapCause.LOST_PACKETS, GapCause.LOST_CHUNKS, GapCause.UNDECODABLE, GapCause.MISSING_LEG}
)

Pcm = npt.NDArray[np.int16]
Interval = tuple[int, int]


@dataclass(frozen=True)
class Rendered:
    """The call's audio: ``samples`` has shape (frames, channels), int16."""

    samples: Pcm
    sample_rate: int
    started_at_us: int
    gaps: tuple[Gap, ...]
    shifted_runs: int = 0
    """Runs moved to follow an earlier run of their leg instead of overlapping it (a metric)."""

    @property
    def duration_ms(self) -> int:
        return len(self.samples) * 1000 // self.sample_rate

    @property
    def missing_audio(self) -> bool:
        return any(g.cause in LOSS_CAUSES for g in self.gaps)


def output_rate(legs: Iterable[PlacedLeg]) -> int:
    """The highest decoded rate among the legs, so a G.722 leg keeps its wideband audio."""
    rates = [r.codec.sample_rate for leg in legs for r in leg.runs if r.codec is not None]
    return max(rates, default=DEFAULT_RATE)


Key = tuple[str, int]
"""(leg_id, chunk_seq): one chunk's decoded samples."""


class Samples(Protocol):
    """Decoded chunks, asked for by key: their length first (to lay the call out), their
    samples later, a window at a time (decode.py keeps them in memory or in a file)."""

    def length(self, key: Key) -> int | None:
        """Samples the chunk decoded to, None for a chunk that did not decode."""

    def read(self, key: Key) -> Pcm: ...


class InMemory:
    """Samples held in a dict (short calls, tests)."""

    def __init__(self, decoded: Mapping[Key, Pcm | None]) -> None:
        self.decoded = decoded

    def length(self, key: Key) -> int | None:
        samples = self.decoded.get(key)
        return None if samples is None else len(samples)

    def read(self, key: Key) -> Pcm:
        samples = self.decoded[key]
        assert samples is not None
        return samples


@dataclass(frozen=True)
class Write:
    """Samples ``lo:hi`` of a chunk (upsampled by ``factor``) go to ``start`` of a channel."""

    start: int
    key: Key
    factor: int
    lo: int
    hi: int
    order: int = 0
    """Where two writes meet, the later one (higher order) wins, as if written one by one."""

    @property
    def end(self) -> int:
        return self.start + self.hi - self.lo


@dataclass(frozen=True)
class Layout:
    """The whole call laid out without its samples: what goes where, and the gaps. Rendering
    is then a window at a time (``window``), so a call of hours never sits in memory whole."""

    sample_rate: int
    started_at_us: int
    frames: int
    channels: int
    gaps: tuple[Gap, ...]
    writes: tuple[tuple[Write, ...], ...]
    """Per side (near, far), sorted by start."""
    longest: int = 0
    """The longest write, so a window finds every write that reaches into it by bisection."""
    shifted_runs: int = 0

    @property
    def duration_ms(self) -> int:
        return self.frames * 1000 // self.sample_rate

    @property
    def missing_audio(self) -> bool:
        return any(g.cause in LOSS_CAUSES for g in self.gaps)

    def window(self, a: int, b: int, samples: Samples) -> Pcm:
        """Frames ``a:b`` of the recording, (b - a, channels) int16."""
        pcm = np.zeros((b - a, 2), dtype=np.int32)
        for index, writes in enumerate(self.writes):
            cached: tuple[Key, Pcm] | None = None
            for w in _overlapping(writes, a, b, self.longest):
                if cached is None or cached[0] != w.key:
                    cached = (w.key, _upsample(samples.read(w.key), w.factor))
                lo, hi = max(w.start, a), min(w.end, b)
                piece = cached[1][w.lo + lo - w.start : w.lo + hi - w.start]
                pcm[lo - a : lo - a + len(piece), index] = piece
        if self.channels == 1:
            pcm = np.clip(pcm.sum(axis=1, keepdims=True), -32768, 32767)
        return pcm.astype(np.int16)

    def windows(self, samples: Samples, frames: int = 1 << 16) -> Iterator[Pcm]:
        for a in range(0, self.frames, frames):
            yield self.window(a, min(a + frames, self.frames), samples)


def _overlapping(writes: Sequence[Write], a: int, b: int, longest: int) -> list[Write]:
    """The writes (sorted by start) that touch frames a:b, in the order they apply."""
    first = bisect.bisect_left(writes, a - longest, key=lambda w: w.start)
    last = bisect.bisect_left(writes, b, key=lambda w: w.start)
    return sorted((w for w in writes[first:last] if w.end > a), key=lambda w: w.order)


def render(
    legs: Sequence[PlacedLeg],
    decoded: Mapping[tuple[str, int], Pcm | None],
    channels: int,
    empty_call_us: tuple[int, int],
) -> Rendered:
    """Lay the legs on two channels and mix down to ``channels`` (2: stereo, 1: mono), whole.

    ``decoded`` maps (leg_id, chunk_seq) to the chunk's samples at its codec's rate, or None for
    a chunk that did not decode. ``empty_call_us`` (start, duration) sizes a call with no audio.
    """
    plan = layout(legs, InMemory(decoded), channels, empty_call_us)
    pcm = plan.window(0, plan.frames, InMemory(decoded))
    return Rendered(pcm, plan.sample_rate, plan.started_at_us, plan.gaps, plan.shifted_runs)


def layout(
    legs: Sequence[PlacedLeg], samples: Samples, channels: int, empty_call_us: tuple[int, int]
) -> Layout:
    """Where every decoded chunk goes and every gap, from the chunks' lengths alone."""
    rate = output_rate(legs)
    origins = [r.origin_us for leg in legs for r in leg.runs]
    start_us = min(origins, default=empty_call_us[0])
    tracks = {side: _Track() for side in SIDES}
    for leg in legs:
        tracks[leg.leg].add_leg(leg, samples, rate, start_us)
    length = max((t.end for t in tracks.values()), default=0)
    if not any(t.audio for t in tracks.values()):
        length = max(length, empty_call_us[1] * rate // 1_000_000)
    gaps: list[Gap] = []
    for side in SIDES:
        gaps.extend(_gaps_of(tracks[side], side, length, rate))
    gaps.sort(key=lambda g: (g.start_ms, SIDES.index(g.leg) if g.leg else -1))
    shifted = sum(leg.shifted_runs for leg in legs)
    writes = tuple(tuple(sorted((w for w in tracks[side].writes if w.start < length),
                                key=lambda w: w.start)) for side in SIDES)
    longest = max((w.end - w.start for side in writes for w in side), default=0)
    return Layout(rate, start_us, length, channels, tuple(gaps), writes, longest, shifted)


class _Track:
    """What one channel receives: sample writes, audio intervals and labelled holes."""

    def __init__(self) -> None:
        self.writes: list[Write] = []
        self.audio: list[Interval] = []
        self.causes: list[tuple[int, int, GapCause]] = []
        self.leg_spans: list[Interval] = []

    @property
    def end(self) -> int:
        ends = [b for _, b in self.audio] + [b for _, b, _ in self.causes]
        return max(ends, default=0)

    def add_leg(self, leg: PlacedLeg, samples: Samples, rate: int, start_us: int) -> None:
        leg_start, leg_end = None, 0
        for run in leg.runs:
            offset = ((run.origin_us - start_us) * rate + 500_000) // 1_000_000
            first, last = self._add_run(leg.leg_id, run, samples, rate, offset)
            leg_start = first if leg_start is None else min(leg_start, first)
            leg_end = max(leg_end, last)
        if leg_start is None:
            return
        self.leg_spans.append((leg_start, leg_end))
        chunk = leg.missing.chunk_us * rate // 1_000_000
        if leg.missing.before_first:
            lead = max(0, leg_start - leg.missing.before_first * chunk)
            self.causes.append((lead, leg_start, GapCause.LOST_CHUNKS))
        if leg.missing.after_last:
            tail = leg_end + leg.missing.after_last * chunk
            self.causes.append((leg_end, tail, GapCause.LOST_CHUNKS))

    def _add_run(
        self, leg_id: str, run: MediaRun, samples: Samples, rate: int, offset: int
    ) -> Interval:
        factor = rate // run.sample_rate

        def scale(n: int) -> int:
            return int(n * rate // run.sample_rate)

        for slot in run.slots:
            start = offset + scale(slot.position)
            if start < 0:
                continue
            key = (leg_id, slot.chunk_seq)
            decoded = samples.length(key) if run.codec else None
            length = scale(slot.samples)
            if decoded is None:
                self.causes.append((start, start + length, GapCause.UNDECODABLE))
                continue
            lo = scale(slot.first_sample)
            hi = max(lo, min(lo + length, decoded * factor))
            self.writes.append(Write(start, key, factor, lo, hi, len(self.writes)))
            self.audio.append((start, start + hi - lo))
        for gap in run.gaps:
            start = offset + scale(gap.start)
            self.causes.append((start, start + scale(gap.length), gap.cause))
        first = max(0, offset)
        return first, offset + scale(run.end)


def _upsample(samples: Pcm, factor: int) -> Pcm:
    """Linear interpolation by an integer factor (8 kHz G.711 beside 16 kHz G.722)."""
    if factor == 1 or len(samples) == 0:
        return samples
    x = np.arange(len(samples) * factor) / factor
    return np.interp(x, np.arange(len(samples)), samples).astype(np.int16)


def _union(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _holes(covered: list[Interval], length: int) -> list[Interval]:
    holes, cursor = [], 0
    for a, b in covered:
        if a > cursor:
            holes.append((cursor, min(a, length)))
        cursor = max(cursor, b)
    if cursor < length:
        holes.append((cursor, length))
    return [h for h in holes if h[1] > h[0]]


def _gaps_of(track: _Track, side: Leg, length: int, rate: int) -> list[Gap]:
    """Label every uncovered stretch: a run's own cause first, else where it lies says why."""
    covered = _union(track.audio)
    if not covered:
        return _to_gaps([(0, length, GapCause.MISSING_LEG)], side, rate)
    first, last = covered[0][0], covered[-1][1]

    def positional(a: int, b: int) -> GapCause:
        """A hole no run explains: inside a leg (between its runs), between legs, or outside."""
        if b <= first or a >= last or any(s <= a and b <= e for s, e in track.leg_spans):
            return GapCause.NO_AUDIO
        return GapCause.HOLD

    labelled: list[tuple[int, int, GapCause]] = []
    causes = sorted(track.causes)
    for a, b in _holes(covered, length):
        cursor = a
        for ca, cb, cause in causes:
            lo, hi = max(a, ca), min(b, cb)
            if hi <= lo or hi <= cursor:
                continue
            lo = max(lo, cursor)
            if lo > cursor:
                labelled.append((cursor, lo, positional(cursor, lo)))
            labelled.append((lo, hi, cause))
            cursor = hi
        if cursor < b:
            labelled.append((cursor, b, positional(cursor, b)))
    return _to_gaps(labelled, side, rate)


def _to_gaps(labelled: list[tuple[int, int, GapCause]], side: Leg, rate: int) -> list[Gap]:
    merged: list[tuple[int, int, GapCause]] = []
    for a, b, cause in labelled:
        if merged and merged[-1][2] == cause and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b, cause)
        else:
            merged.append((a, b, cause))
    gaps = []
    for a, b, cause in merged:
        start_ms, end_ms = a * 1000 // rate, (b * 1000 + rate - 1) // rate
        if (b - a) * 1000 >= rate:
            duration = end_ms - start_ms
            gaps.append(Gap(leg=side, start_ms=start_ms, duration_ms=duration, cause=cause))
    return gaps
