"""Windowed metrics: tallies from the fold and the tick summed per 10 s window, plus gauges.

Each worker reports what its own partitions did (labels carry no worker): a dashboard sums the
samples of a window over producers, which is exact because a partition has one owner at a time.
Every per-recorder figure is also reported overall (no labels, or without the recorder label).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

from callrec.avro.events import MetricSample
from callrec.streams.outputs import AudioAdded, Labels, Tally
from callrec.streams.projection import at_time

SeriesKey = tuple[str, Labels]


@dataclass(frozen=True, slots=True)
class MetricWindow:
    start: int
    length: int
    sums: Mapping[SeriesKey, float] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def end(self) -> int:
        return self.start + self.length


def window_at(now: int, length: int) -> MetricWindow:
    return MetricWindow(start=now - now % length, length=length)


def add(window: MetricWindow, tallies: Iterable[Tally]) -> MetricWindow:
    """The window with the tallies summed in, each also under its overall series."""
    sums = dict(window.sums)
    for tally in tallies:
        for key in _series(tally.metric, tally.labels):
            sums[key] = sums.get(key, 0.0) + tally.value
    return MetricWindow(window.start, window.length, MappingProxyType(sums))


AUDIO_METRICS = ("audio_bytes_total", "audio_packets_total", "audio_packets_lost_total")


def audio_tallies(added: Iterable[AudioAdded]) -> list[Tally]:
    """The ``audio_*`` tallies of chunks new to their legs, summed per recorder: a batch of
    thousands of chunks adds a few tallies to the window, not three per chunk."""
    sums: dict[str, tuple[int, int, int]] = {}
    for chunk in added:
        payload_bytes, packets, lost = sums.get(chunk.recorder, (0, 0, 0))
        sums[chunk.recorder] = (payload_bytes + chunk.payload_bytes, packets + chunk.packets,
                                lost + chunk.packets_lost)
    return [Tally(metric, (("recorder", recorder),), value)
            for recorder, values in sums.items()
            for metric, value in zip(AUDIO_METRICS, values, strict=True)]


def gauge_tallies(metric: str, per_recorder: Mapping[str, int]) -> list[Tally]:
    return [
        Tally(metric, (("recorder", recorder),), count) for recorder, count in per_recorder.items()
    ]


def samples(
    window: MetricWindow, gauges: Iterable[Tally], producer_id: str
) -> list[MetricSample]:
    """The window's samples: every counter series, and the gauges as of its end (0 if none)."""
    gauge_window = add(MetricWindow(window.start, window.length), gauges)
    series = dict(window.sums)
    series.update(gauge_window.sums)
    series.setdefault(("calls_active", ()), 0.0)
    start, end = at_time(window.start), at_time(window.end)
    return [
        MetricSample(
            producer_id=producer_id, metric=metric, labels=dict(labels),
            window_start=start, window_end=end, value=value,
        )
        for (metric, labels), value in sorted(series.items())
    ]


@lru_cache(maxsize=4096)
def _series(metric: str, labels: Labels) -> list[SeriesKey]:
    overall = tuple(pair for pair in labels if pair[0] != "recorder")
    keys: list[SeriesKey] = [(metric, tuple(sorted(labels)))]
    if overall != labels:
        keys.append((metric, tuple(sorted(overall))))
    return keys
