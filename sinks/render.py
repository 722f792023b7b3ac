"""Planned legs + decoded chunks -> the call's samples (near left, far right) and its gap list.

Every stretch of a channel that no decoded packet covers is a gap, and each gap says why: the
cause a run recorded (lost packets, no audio sent, lost chunks), a chunk that did not decode, the
pause between two segments of a side (CUCM's hold: a new INVITE pair), or a side that never had a
leg at all. A pause between two runs of one leg is NO_AUDIO: late or bursty packets never make a
HOLD, and the mixer is not told when an in-dialog re-INVITE put the leg on hold.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from callrec.avro.events import Gap, GapCause, Leg
from callrec.sinks.placed import MediaRun, PlacedLeg

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


class Samples(Protocol):
    """Each leg's decoded audio, its chunks' samples end to end in chunk order (addressed as
    ``Slot.sample``); decode.py keeps them in memory or in a file."""

    def failed(self, leg_id: str, a: int, b: int) -> list[Interval]:
        """The parts of the leg's samples a:b that did not decode."""

    def read(self, leg_id: str, a: int, n: int, factor: int) -> Pcm:
        """``n`` samples from ``a`` of the leg's audio upsampled by ``factor`` (``a`` counted
        in upsampled samples)."""


class InMemory:
    """Decoded chunks handed over as a dict by (leg_id, chunk_seq) (short calls, tests)."""

    def __init__(
        self, legs: Iterable[PlacedLeg], decoded: Mapping[tuple[str, int], Pcm | None]
    ) -> None:
        self.audio: dict[str, Pcm] = {}
        self.extents: dict[str, tuple[list[int], list[int]]] = {}
        self.broken: dict[str, list[Interval]] = {}
        for leg in legs:
            parts: list[Pcm] = []
            starts: list[int] = []
            ends: list[int] = []
            broken: list[Interval] = []
            for chunk in leg.chunks:
                samples = decoded.get((leg.leg_id, chunk.chunk_seq))
                starts.append(chunk.base)
                ends.append(chunk.base + chunk.samples)
                if samples is None:
                    broken.append((chunk.base, chunk.base + chunk.samples))
                    samples = np.zeros(chunk.samples, np.int16)
                parts.append(samples)
            self.audio[leg.leg_id] = np.concatenate(parts) if parts else np.zeros(0, np.int16)
            self.extents[leg.leg_id] = (starts, ends)
            self.broken[leg.leg_id] = broken

    def failed(self, leg_id: str, a: int, b: int) -> list[Interval]:
        return [(max(a, s), min(b, e)) for s, e in self.broken.get(leg_id, []) if s < b and e > a]

    def read(self, leg_id: str, a: int, n: int, factor: int) -> Pcm:
        audio = self.audio[leg_id]
        starts, ends = self.extents[leg_id]
        return read_upsampled(lambda s, c: audio[s : s + c], starts, ends, a, n, factor)


def read_upsampled(
    read: Callable[[int, int], Pcm], starts: Sequence[int], ends: Sequence[int], a: int, n: int,
    factor: int,
) -> Pcm:
    """``n`` samples from ``a`` (in upsampled samples) of audio whose chunks span
    ``starts[i]:ends[i]``, each chunk upsampled on its own (``read(start, count)`` reads)."""
    if factor == 1:
        return read(a, n)
    parts = []
    i = bisect.bisect_right(starts, a // factor) - 1
    while n > 0:
        start = starts[i]
        chunk = _upsample(read(start, ends[i] - start), factor)
        piece = chunk[a - start * factor : a - start * factor + n]
        parts.append(piece)
        a, n, i = a + len(piece), n - len(piece), i + 1
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


@dataclass(frozen=True, slots=True)
class Write:
    """``length`` samples from ``src`` of a leg's audio (upsampled by ``factor``, both counted
    in upsampled samples) go to ``start`` of a channel."""

    start: int
    leg_id: str
    src: int
    length: int
    factor: int
    order: int = 0
    """Where two writes meet, the later one (higher order) wins, as if written one by one."""

    @property
    def end(self) -> int:
        return self.start + self.length


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
    reach: tuple[tuple[int, ...], ...] = ((), ())
    """Per side, the furthest end of the writes so far: a window finds every write that
    reaches into it by bisection, however long the writes."""
    shifted_runs: int = 0

    @property
    def duration_ms(self) -> int:
        return self.frames * 1000 // self.sample_rate

    @property
    def missing_audio(self) -> bool:
        return any(g.cause in LOSS_CAUSES for g in self.gaps)

    def window(self, a: int, b: int, samples: Samples) -> Pcm:
        """Frames ``a:b`` of the recording, (b - a, channels) int16."""
        if self.channels == 1:  # the clipped sum, in int32 (numpy's sum would widen to int64)
            mono = np.add(self._side(0, a, b, samples), self._side(1, a, b, samples),
                          dtype=np.int32)
            clipped: Pcm = np.clip(mono, -32768, 32767, out=mono).astype(np.int16)
            return clipped.reshape(-1, 1)
        pcm = np.empty((b - a, 2), dtype=np.int16)
        for index in (0, 1):
            pcm[:, index] = self._side(index, a, b, samples)
        return pcm

    def _side(self, index: int, a: int, b: int, samples: Samples) -> Pcm:
        """Frames ``a:b`` of one side (near 0, far 1), silence where nothing is written."""
        writes = _overlapping(self.writes[index], self.reach[index], a, b)
        if len(writes) == 1 and writes[0].start <= a and writes[0].end >= b:  # the usual window
            w = writes[0]
            return samples.read(w.leg_id, w.src + a - w.start, b - a, w.factor)
        side = np.zeros(b - a, dtype=np.int16)
        for w in writes:
            lo, hi = max(w.start, a), min(w.end, b)
            side[lo - a : hi - a] = samples.read(w.leg_id, w.src + lo - w.start, hi - lo, w.factor)
        return side

    def windows(self, samples: Samples, frames: int = 1 << 16) -> Iterator[Pcm]:
        for a in range(0, self.frames, frames):
            yield self.window(a, min(a + frames, self.frames), samples)


def _overlapping(writes: Sequence[Write], reach: Sequence[int], a: int, b: int) -> list[Write]:
    """The writes (sorted by start) that touch frames a:b, in the order they apply."""
    first = bisect.bisect_right(reach, a)
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
    samples = InMemory(legs, decoded)
    plan = layout(legs, samples, channels, empty_call_us)
    pcm = plan.window(0, plan.frames, samples)
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
    reach = tuple(tuple(itertools.accumulate((w.end for w in side), max)) for side in writes)
    return Layout(rate, start_us, length, channels, tuple(gaps), writes, reach, shifted)


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
            length = scale(slot.samples)
            if run.codec is None:
                self.causes.append((start, start + length, GapCause.UNDECODABLE))
                continue
            done = 0  # of the slot, in output samples
            for a, b in samples.failed(leg_id, slot.sample, slot.sample + slot.samples):
                lo, hi = scale(a - slot.sample), scale(b - slot.sample)
                self._write(leg_id, start + done, slot.sample * factor + done, lo - done, factor)
                self.causes.append((start + lo, start + hi, GapCause.UNDECODABLE))
                done = hi
            self._write(leg_id, start + done, slot.sample * factor + done, length - done, factor)
        for gap in run.gaps:
            start = offset + scale(gap.start)
            self.causes.append((start, start + scale(gap.length), gap.cause))
        first = max(0, offset)
        return first, offset + scale(run.end)

    def _write(self, leg_id: str, start: int, src: int, length: int, factor: int) -> None:
        if length > 0:
            self.writes.append(Write(start, leg_id, src, length, factor, len(self.writes)))
            self.audio.append((start, start + length))


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
