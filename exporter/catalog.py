"""Which `rec.metrics.v1` samples become which Prometheus series, and what each series means.

The call-state worker names its windowed figures in its own words (`calls_active`,
`audio_packets_lost_total`); this table is the one place that maps them to Prometheus names with
base units and HELP. A sample's label keys must be exactly the spec's: the worker also writes
each per-recorder figure once more without the recorder label (its roll-up), which Prometheus
computes itself with `sum()`, so that copy is skipped, and any other label set is malformed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"


@dataclass(frozen=True, slots=True)
class SampleSpec:
    source: str
    """The metric name the call-state worker writes."""
    name: str
    """The Prometheus name (a counter's without `_total`; the client library appends it)."""
    kind: Kind
    labels: tuple[str, ...]
    help: str


SAMPLE_SPECS: dict[str, SampleSpec] = {
    spec.source: spec
    for spec in (
        SampleSpec("calls_started_total", "callrec_calls_started", Kind.COUNTER, ("recorder",),
                   "Calls whose first leg started, by the recorder of that leg."),
        SampleSpec("calls_completed_total", "callrec_calls_completed", Kind.COUNTER,
                   ("recorder",), "Calls that ended normally (both legs BYE or CANCEL)."),
        SampleSpec("calls_abnormal_total", "callrec_calls_abnormal", Kind.COUNTER,
                   ("reason", "recorder"),
                   "Calls that ended abnormally, by reason (RECORDER_LOST, MEDIA_TIMEOUT, ...)."),
        SampleSpec("audio_bytes_total", "callrec_audio_payload_bytes", Kind.COUNTER,
                   ("recorder",), "RTP payload bytes recorded, as folded by the call state."),
        SampleSpec("audio_packets_total", "callrec_audio_packets_received", Kind.COUNTER,
                   ("recorder",), "RTP packets received by the recorders."),
        SampleSpec("audio_packets_lost_total", "callrec_audio_packets_lost", Kind.COUNTER,
                   ("recorder",), "RTP packets lost before the recorders (sequence gaps)."),
        SampleSpec("deadletters_total", "callrec_streams_deadletters", Kind.COUNTER, (),
                   "Events the call-state workers could not use and dead-lettered."),
        SampleSpec("records_quarantined_total", "callrec_recorder_records_quarantined",
                   Kind.COUNTER, ("recorder",),
                   "Records Kafka refused for good, kept in the recorder's quarantine file "
                   "and dead-lettered (producers/quarantine.py)."),
        SampleSpec("calls_active", "callrec_calls_active", Kind.GAUGE, ("recorder",),
                   "Calls in progress at the end of the latest metric window, by recorder."),
    )
}

IGNORED_SAMPLES = frozenset({"recorder_up"})
"""Known figures the exporter takes from elsewhere: recorder liveness comes straight from the
heartbeats (`callrec_recorder_up`), not from each worker's view of them."""

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
"""Archive latency: a call ends -> its recording is in S3 (seconds to minutes when healthy)."""
CHUNK_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Chunk delivery: a recorder closes a 200 ms chunk -> a consumer can read it."""


def label_values(spec: SampleSpec, labels: dict[str, str]) -> tuple[str, ...] | None:
    """The spec's label values, or None for the worker's roll-up copy of a per-recorder figure.

    Raises ValueError for any other label set: a sample no dashboard could place.
    """
    keys = set(labels)
    if keys == set(spec.labels):
        return tuple(labels[key] for key in spec.labels)
    if "recorder" in spec.labels and keys == set(spec.labels) - {"recorder"}:
        return None
    raise ValueError(f"{spec.source} takes labels {sorted(spec.labels)}, got {sorted(keys)}")
