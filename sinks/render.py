"""Planned legs + decoded chunks -> the call's samples (near left, far right) and its gap list.

Every stretch of a channel that no decoded packet covers is a gap, and each gap says why: the
cause a run recorded (lost packets, no audio sent, lost chunks), a chunk that did not decode, the
pause between two segments of a side (CUCM's hold: a new INVITE pair), or a side that never had a
leg at all. A pause between two runs of one leg is NO_AUDIO: late or bursty packets never make a
HOLD, and the mixer is not told when an in-dialog re-INVITE put the leg on hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

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


def render(
    legs: Sequence[PlacedLeg],
    decoded: Mapping[tuple[str, int], Pcm | None],
    channels: int,
    empty_call_us: tuple[int, int],
) -> Rendered:
    """Lay the legs on two channels and mix down to ``channels`` (2: stereo, 1: mono).

    ``decoded`` maps (leg_id, chunk_seq) to the chunk's samples at its codec's rate, or None for
    a chunk that did not decode. ``empty_call_us`` (start, duration) sizes a call with no audio.
    """
    rate = output_rate(legs)
    origins = [r.origin_us for leg in legs for r in leg.runs]
    start_us = min(origins, default=empty_call_us[0])
    tracks = {side: _Track() for side in SIDES}
    for leg in legs:
        tracks[leg.leg].add_leg(leg, decoded, rate, start_us)
    length = max((t.end for t in tracks.values()), default=0)
    if not any(t.audio for t in tracks.values()):
        length = max(length, empty_call_us[1] * rate // 1_000_000)
    pcm = np.zeros((length, 2), dtype=np.int32)
    gaps: list[Gap] = []
    for index, side in enumerate(SIDES):
        track = tracks[side]
        for start, data in track.writes:
            pcm[start : start + len(data), index] = data
        gaps.extend(_gaps_of(track, side, length, rate))
    if channels == 1:
        pcm = np.clip(pcm.sum(axis=1, keepdims=True), -32768, 32767)
    gaps.sort(key=lambda g: (g.start_ms, SIDES.index(g.leg) if g.leg else -1))
    shifted = sum(leg.shifted_runs for leg in legs)
    return Rendered(pcm.astype(np.int16), rate, start_us, tuple(gaps), shifted)


class _Track:
    """What one channel receives: sample writes, audio intervals and labelled holes."""

    def __init__(self) -> None:
        self.writes: list[tuple[int, Pcm]] = []
        self.audio: list[Interval] = []
        self.causes: list[tuple[int, int, GapCause]] = []
        self.leg_spans: list[Interval] = []

    @property
    def end(self) -> int:
        ends = [b for _, b in self.audio] + [b for _, b, _ in self.causes]
        return max(ends, default=0)

    def add_leg(
        self,
        leg: PlacedLeg,
        decoded: Mapping[tuple[str, int], Pcm | None],
        rate: int,
        start_us: int,
    ) -> None:
        leg_start, leg_end = None, 0
        for run in leg.runs:
            offset = ((run.origin_us - start_us) * rate + 500_000) // 1_000_000
            first, last = self._add_run(leg.leg_id, run, decoded, rate, offset)
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
        self,
        leg_id: str,
        run: MediaRun,
        decoded: Mapping[tuple[str, int], Pcm | None],
        rate: int,
        offset: int,
    ) -> Interval:
        def scale(n: int) -> int:
            return int(n * rate // run.sample_rate)

        upsampled: dict[int, Pcm | None] = {}
        for slot in run.slots:
            start = offset + scale(slot.position)
            if start < 0:
                continue
            if slot.chunk_seq not in upsampled:
                samples = decoded.get((leg_id, slot.chunk_seq)) if run.codec else None
                upsampled[slot.chunk_seq] = (
                    None if samples is None else _upsample(samples, rate // run.sample_rate)
                )
            chunk = upsampled[slot.chunk_seq]
            length = scale(slot.samples)
            if chunk is None:
                self.causes.append((start, start + length, GapCause.UNDECODABLE))
                continue
            piece = chunk[scale(slot.first_sample) : scale(slot.first_sample) + length]
            self.writes.append((start, piece))
            self.audio.append((start, start + len(piece)))
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
