"""What the exporter knows, folded from the log: no Kafka, no HTTP, no clock of its own.

The adapter (`service.py`) decodes records and hands each event here with the time it read it;
the collector (`collector.py`) turns this state into Prometheus series at scrape time. Counters
are sums of the call-state worker's windowed counts since the exporter's read start, so an
exporter that restarts and re-reads the same history reports the same totals.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from datetime import datetime

from callrec.avro.events import (
    CallRecord,
    CallStatus,
    MetricSample,
    RecorderHealth,
    RecorderHeartbeat,
    RecordingArchived,
)
from callrec.exporter.catalog import (
    CHUNK_BUCKETS_S,
    IGNORED_SAMPLES,
    LATENCY_BUCKETS_S,
    SAMPLE_SPECS,
    Kind,
    label_values,
)
from callrec.exporter.errors import InvalidSample

SeriesKey = tuple[str, tuple[str, ...]]
US = 1_000_000


def micros(moment: datetime) -> int:
    """Microseconds since the epoch of a model's aware datetime."""
    return int(moment.timestamp() * US)


@dataclass
class Histogram:
    """Bucketed observations, kept per bucket; the collector makes them cumulative."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        running, out = 0, []
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == math.inf else repr(bound), running))
        return out


@dataclass
class RecorderView:
    """The newest heartbeat of one recorder, as the exporter last read it."""

    heard_at_us: int
    health: RecorderHealth
    interval_ms: int
    active_legs: int
    max_legs: int
    spool_bytes: int
    spool_oldest_age_ms: int
    spool_refuse_bytes: int = 0
    spool_max_bytes: int = 0
    reasons: tuple[str, ...] = ()
    """Why the recorder refuses new calls (its heartbeat's ``health_reasons``: "disk full",
    "Kafka unreachable", "at capacity", ...)."""
    rtp_dropped: dict[str, int] = field(default_factory=dict)


@dataclass
class GaugeWindow:
    """One worker's gauges of its newest window; a newer window replaces them all."""

    start_us: int
    values: dict[SeriesKey, float] = field(default_factory=dict)


@dataclass
class ExporterState:
    recorder_lost_after_s: float = 5.0
    gauge_stale_s: float = 30.0
    """A worker whose newest gauge window is older than this has left; its gauges no longer
    count (another worker reports its partitions)."""
    forget_after_s: float = 86_400.0
    """How long the state keeps what went quiet: an archived call key (so a later snapshot of
    the call does not count it as waiting again), a call that never got its recording, a
    recorder silent since (a retired one stops alerting), a worker's windows."""

    counters: dict[SeriesKey, float] = field(default_factory=dict)
    gauges: dict[str, GaugeWindow] = field(default_factory=dict)
    gauge_series: set[SeriesKey] = field(default_factory=set)
    last_window: dict[tuple[str, str, tuple[tuple[str, str], ...]], int] = field(
        default_factory=dict)
    samples_ignored: int = 0
    recorders: dict[str, RecorderView] = field(default_factory=dict)
    awaiting_recording: dict[str, int] = field(default_factory=dict)
    """Terminal calls without a RecordingArchived yet: call key -> ended_at (us)."""
    archived: dict[str, int] = field(default_factory=dict)
    """Call keys archived: call key -> when the recording was announced (us)."""
    archive_latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_S))
    chunk_delivery: Histogram = field(default_factory=lambda: Histogram(CHUNK_BUCKETS_S))
    recordings: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(CUCM cluster, call status, partial) -> recordings archived."""
    recorded_audio_s: dict[str, float] = field(default_factory=dict)
    """CUCM cluster -> seconds of call audio archived."""
    recording_bytes: dict[str, int] = field(default_factory=dict)
    manifest_day_s: float | None = None
    """Start (Unix time) of the newest day with a signed manifest; 0 if none within a week;
    None when the exporter has no S3 settings."""
    lags: dict[tuple[str, str], int] = field(default_factory=dict)
    """(consumer group, topic) -> records not yet consumed, as of the last admin poll."""

    # --- rec.metrics.v1 ---------------------------------------------------------------------

    def apply_sample(self, sample: MetricSample) -> None:
        """Fold one windowed sample; a window already folded for its series is skipped."""
        spec = SAMPLE_SPECS.get(sample.metric)
        if spec is None:
            if sample.metric not in IGNORED_SAMPLES:
                self.samples_ignored += 1
            return
        if not math.isfinite(sample.value) or (spec.kind == Kind.COUNTER and sample.value < 0):
            raise InvalidSample(f"{sample.metric} has value {sample.value}")
        try:
            values = label_values(spec, sample.labels)
        except ValueError as e:
            raise InvalidSample(str(e)) from e
        start = micros(sample.window_start)
        if spec.kind == Kind.GAUGE:
            # Any gauge sample of a newer window (the roll-up too, which the worker always
            # writes) starts that worker's new window: a series missing from it is now 0.
            window = self.gauges.get(sample.producer_id)
            if window is None or window.start_us < start:
                window = self.gauges[sample.producer_id] = GaugeWindow(start)
            if values is not None and window.start_us == start:
                key = (spec.name, values)
                window.values[key] = sample.value
                self.gauge_series.add(key)
            return
        if values is None:
            return
        seen = (sample.producer_id, sample.metric, tuple(sorted(sample.labels.items())))
        if self.last_window.get(seen, -1) >= start:
            return
        self.last_window[seen] = start
        key = (spec.name, values)
        self.counters[key] = self.counters.get(key, 0.0) + sample.value

    def gauge_values(self, now_us: int) -> dict[SeriesKey, float]:
        """Each gauge summed over live workers (each reports its own partitions); 0 once it is
        gone from every worker's newest window."""
        values = dict.fromkeys(self.gauge_series, 0.0)
        fresh_from = now_us - int(self.gauge_stale_s * US)
        for window in self.gauges.values():
            if window.start_us < fresh_from:
                continue
            for key, value in window.values.items():
                values[key] += value
        return values

    # --- rec.recorders.v1 -------------------------------------------------------------------

    def apply_heartbeat(self, beat: RecorderHeartbeat) -> None:
        at = micros(beat.event_time)
        known = self.recorders.get(beat.recorder_id)
        if known is not None and known.heard_at_us > at:
            return
        self.recorders[beat.recorder_id] = RecorderView(
            heard_at_us=at, health=beat.health, interval_ms=beat.interval_ms,
            active_legs=beat.active_legs, max_legs=beat.max_legs,
            spool_bytes=beat.spool_bytes, spool_oldest_age_ms=beat.spool_oldest_age_ms,
            spool_refuse_bytes=beat.spool_refuse_bytes, spool_max_bytes=beat.spool_max_bytes,
            reasons=tuple(beat.health_reasons),
            rtp_dropped=dict(beat.rtp_dropped),
        )

    def recorder_up(self, recorder: RecorderView, now_us: int) -> bool:
        return now_us - recorder.heard_at_us <= self.recorder_lost_after_s * US

    def in_service(self, recorder: RecorderView, now_us: int) -> bool:
        """Takes new calls: alive and saying HEALTHY (CUCM's OPTIONS get 200)."""
        return self.recorder_up(recorder, now_us) and recorder.health == RecorderHealth.HEALTHY

    # --- rec.calls.v1 and rec.recordings.v1 ---------------------------------------------------

    def apply_call(self, call: CallRecord) -> None:
        if call.status == CallStatus.ACTIVE or call.ended_at is None:
            return
        if call.call_key in self.archived:
            return
        self.awaiting_recording.setdefault(call.call_key, micros(call.ended_at))

    def apply_recording(self, recording: RecordingArchived) -> None:
        at = micros(recording.event_time)
        if recording.call_key in self.archived:
            return
        self.archived[recording.call_key] = at
        cluster = recording.call_key.rpartition(":")[0]
        key = (cluster, recording.call_status.value, "true" if recording.partial else "false")
        self.recordings[key] = self.recordings.get(key, 0) + 1
        self.recorded_audio_s[cluster] = (
            self.recorded_audio_s.get(cluster, 0.0) + recording.duration_ms / 1000)
        self.recording_bytes[cluster] = self.recording_bytes.get(cluster, 0) + recording.size_bytes
        ended = self.awaiting_recording.pop(recording.call_key, None)
        if ended is not None:
            self.archive_latency.observe(max(0.0, (at - ended) / US))

    def prune(self, now_us: int) -> None:
        """Forget what has been quiet for ``forget_after_s``, so memory stays bounded."""
        cutoff = now_us - int(self.forget_after_s * US)
        self.archived = {key: at for key, at in self.archived.items() if at >= cutoff}
        self.awaiting_recording = {key: at for key, at in self.awaiting_recording.items()
                                   if at >= cutoff}
        self.recorders = {key: view for key, view in self.recorders.items()
                          if view.heard_at_us >= cutoff}
        self.last_window = {key: at for key, at in self.last_window.items() if at >= cutoff}
        self.gauges = {key: window for key, window in self.gauges.items()
                       if window.start_us >= cutoff}

    def oldest_awaiting_recording_s(self, now_us: int) -> float:
        if not self.awaiting_recording:
            return 0.0
        return max(0.0, (now_us - min(self.awaiting_recording.values())) / US)

    # --- rec.audio.v1 -----------------------------------------------------------------------

    def observe_chunk(self, closed_at_us: int, read_at_us: int) -> None:
        self.chunk_delivery.observe(max(0.0, (read_at_us - closed_at_us) / US))
