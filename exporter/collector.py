"""The exporter's state as Prometheus series, built at scrape time (no per-event client calls).

Every family is emitted with its HELP even when it has no sample yet, and the per-recorder
counters of every recorder the exporter has heard of start at 0 for every reason, so a dashboard
shows "0 abnormal" rather than no data, and `rate()` sees the first increase.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from callrec.avro.events import AbnormalReason
from callrec.exporter.catalog import SAMPLE_SPECS, Kind
from callrec.exporter.state import US, ExporterState, Histogram, RecorderView
from callrec.producers.rtp_gate import Drop


@dataclass
class SelfStats:
    """The exporter's own health: what it read, what it rejected, whether Kafka answers."""

    events: dict[str, int] = field(default_factory=dict)
    rejected: dict[tuple[str, str], int] = field(default_factory=dict)
    kafka_up: bool = False
    lag_polled_at_us: int = 0

    def count_event(self, topic: str) -> None:
        self.events[topic] = self.events.get(topic, 0) + 1

    def count_rejected(self, topic: str, reason: str) -> None:
        self.rejected[topic, reason] = self.rejected.get((topic, reason), 0) + 1


RECORDER_GAUGES: tuple[tuple[str, str, Callable[[RecorderView], float]], ...] = (
    ("callrec_recorder_last_heartbeat_timestamp_seconds",
     "When the recorder's newest heartbeat was sent (Unix time).", lambda r: r.heard_at_us / US),
    ("callrec_recorder_active_legs", "Legs the recorder is recording now (its heartbeat).",
     lambda r: r.active_legs),
    ("callrec_recorder_max_legs", "Legs the recorder accepts before answering 503.",
     lambda r: r.max_legs),
    ("callrec_recorder_spool_bytes", "Events waiting in the recorder's disk spool for Kafka.",
     lambda r: r.spool_bytes),
    ("callrec_recorder_spool_refuse_bytes", "Spool size above which the recorder answers new "
     "calls 503 (0: its heartbeat does not say).", lambda r: r.spool_refuse_bytes),
    ("callrec_recorder_spool_max_bytes", "The recorder spool's hard limit (0: its heartbeat does "
     "not say).", lambda r: r.spool_max_bytes),
    ("callrec_recorder_spool_oldest_age_seconds",
     "Age of the oldest event in the recorder's spool (0 when empty).",
     lambda r: r.spool_oldest_age_ms / 1000),
)


class StateCollector(Collector):
    """Reads the state under the adapter's lock; the HTTP thread calls `collect()`."""

    def __init__(self, state: ExporterState, stats: SelfStats, lock: threading.Lock,
                 clock: Callable[[], float] = time.time) -> None:
        self.state, self.stats, self.lock, self.clock = state, stats, lock, clock

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            now_us = int(self.clock() * US)
            families = [*self._samples(now_us), *self._recorders(now_us),
                        *self._recordings(now_us), *self._manifests(), *self._lags(),
                        *self._self()]
        yield from families

    def _samples(self, now_us: int) -> list[Metric]:
        state = self.state
        recorders = set(state.recorders)
        recorders.update(values[-1] for (name, values) in state.counters
                         if name in PER_RECORDER and values)
        out: list[Metric] = []
        gauges = state.gauge_values(now_us)
        for spec in SAMPLE_SPECS.values():
            family: CounterMetricFamily | GaugeMetricFamily
            if spec.kind == Kind.COUNTER:
                family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
                series = {values: v for (name, values), v in state.counters.items()
                          if name == spec.name}
            else:
                family = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
                series = {values: v for (name, values), v in gauges.items() if name == spec.name}
            for values in _zero_series(spec.labels, recorders):
                series.setdefault(values, 0.0)
            for values, value in sorted(series.items()):
                family.add_metric(list(values), value)
            out.append(family)
        return out

    def _recorders(self, now_us: int) -> list[Metric]:
        state = self.state
        up = GaugeMetricFamily("callrec_recorder_up", "1 while the recorder's heartbeats arrive "
                               "(one within the lost-after time), else 0.", labels=["recorder"])
        serving = GaugeMetricFamily(
            "callrec_recorder_in_service",
            "1 while the recorder is up and HEALTHY (takes new calls), else 0.",
            labels=["recorder"])
        refusing = GaugeMetricFamily(
            "callrec_recorder_refusing",
            "1 per reason an up recorder gives for refusing new calls (503), e.g. \"disk full\".",
            labels=["recorder", "reason"])
        others = [GaugeMetricFamily(name, text, labels=["recorder"])
                  for name, text, _ in RECORDER_GAUGES]
        dropped = CounterMetricFamily(
            "callrec_recorder_rtp_dropped", "RTP datagrams the recorder did not record, by "
            "reason (stranger, ssrc, oversize) since it started (its heartbeat).",
            labels=["recorder", "reason"])
        for recorder, view in sorted(state.recorders.items()):
            for reason in sorted({*Drop, *view.rtp_dropped}):
                dropped.add_metric([recorder, reason], float(view.rtp_dropped.get(reason, 0)))
            up.add_metric([recorder], float(state.recorder_up(view, now_us)))
            serving.add_metric([recorder], float(state.in_service(view, now_us)))
            if state.recorder_up(view, now_us):
                for reason in view.reasons:
                    refusing.add_metric([recorder, reason], 1.0)
            for family, (_, _, value) in zip(others, RECORDER_GAUGES, strict=True):
                family.add_metric([recorder], float(value(view)))
        return [up, serving, refusing, *others, dropped]

    def _recordings(self, now_us: int) -> list[Metric]:
        state = self.state
        archived = CounterMetricFamily(
            "callrec_recordings_archived", "Recordings in S3 (RecordingArchived), by CUCM "
            "cluster, the call's status and whether audio is missing from them.",
            labels=["cluster", "status", "partial"])
        for (cluster, status, partial), count in sorted(state.recordings.items()):
            archived.add_metric([cluster, status, partial], count)
        audio = CounterMetricFamily("callrec_recorded_audio_seconds",
                                    "Audio archived, seconds of call time, by CUCM cluster.",
                                    labels=["cluster"])
        for cluster, seconds in sorted(state.recorded_audio_s.items()):
            audio.add_metric([cluster], seconds)
        size = CounterMetricFamily("callrec_recording_bytes",
                                   "Bytes of recordings archived, by CUCM cluster.",
                                   labels=["cluster"])
        for cluster, count in sorted(state.recording_bytes.items()):
            size.add_metric([cluster], count)
        return [
            archived, audio, size,
            _histogram("callrec_archive_latency_seconds",
                       "A call's end (CallRecord.ended_at) to its RecordingArchived.",
                       state.archive_latency),
            _histogram("callrec_audio_chunk_delivery_seconds",
                       "A recorder closing a 200 ms chunk to the chunk being readable from Kafka.",
                       state.chunk_delivery),
            GaugeMetricFamily("callrec_calls_awaiting_recording",
                              "Ended calls whose recording is not archived yet.",
                              value=len(state.awaiting_recording)),
            GaugeMetricFamily("callrec_calls_awaiting_recording_oldest_age_seconds",
                              "Time since the oldest ended call still without a recording ended.",
                              value=state.oldest_awaiting_recording_s(now_us)),
        ]

    def _manifests(self) -> list[Metric]:
        if self.state.manifest_day_s is None:
            return []
        return [GaugeMetricFamily(
            "callrec_manifest_last_signed_day_timestamp_seconds",
            "Start (Unix time, UTC) of the newest day whose integrity manifest is signed in S3; "
            "0 if none within a week.", value=self.state.manifest_day_s)]

    def _lags(self) -> list[Metric]:
        lag = GaugeMetricFamily("callrec_consumer_group_lag_records",
                                "Records of a topic not yet consumed by a consumer group "
                                "(end offset minus committed offset, summed over partitions).",
                                labels=["group", "topic"])
        for (group, topic), records in sorted(self.state.lags.items()):
            lag.add_metric([group, topic], records)
        return [lag]

    def _self(self) -> list[Metric]:
        stats = self.stats
        events = CounterMetricFamily("callrec_exporter_events",
                                     "Events the exporter read, by topic.", labels=["topic"])
        for topic, count in sorted(stats.events.items()):
            events.add_metric([topic], count)
        dead = CounterMetricFamily(
            "callrec_exporter_rejected_records",
            "Records the exporter could not use, by topic and error; those of rec.metrics.v1 "
            "are also written to rec.deadletter.v1.", labels=["topic", "reason"])
        for (topic, reason), count in sorted(stats.rejected.items()):
            dead.add_metric([topic, reason], count)
        return [
            events, dead,
            CounterMetricFamily("callrec_exporter_samples_ignored",
                                "Metric samples of a name the exporter does not know.",
                                value=self.state.samples_ignored),
            GaugeMetricFamily("callrec_exporter_kafka_up",
                              "1 while the exporter's last Kafka read and admin poll worked.",
                              value=float(stats.kafka_up)),
            GaugeMetricFamily("callrec_exporter_lag_poll_timestamp_seconds",
                              "When consumer-group lag was last read (Unix time).",
                              value=stats.lag_polled_at_us / US),
        ]


PER_RECORDER = frozenset(spec.name for spec in SAMPLE_SPECS.values()
                         if spec.labels and spec.labels[-1] == "recorder")
REASONS = tuple(reason.value for reason in AbnormalReason)


def _zero_series(labels: tuple[str, ...], recorders: set[str]) -> list[tuple[str, ...]]:
    """The label values every known recorder should show, at 0 until something happens."""
    if labels == ("recorder",):
        return [(recorder,) for recorder in recorders]
    if labels == ("reason", "recorder"):
        return [(reason, recorder) for reason in REASONS for recorder in recorders]
    return [()] if not labels else []


def _histogram(name: str, text: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, text, buckets=histogram.cumulative(),
                                 sum_value=histogram.total)
