"""The topic contract: which events go on which topic, and how each topic is configured.

Call-keyed topics share one partition count so that a call's lifecycle, audio, snapshot and
recording land on the same partition number (the call-state worker and the mixer rely on
co-partitioning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callrec.avro.events import (
    AccessAudited,
    AudioChunk,
    CallRecord,
    DeadLetter,
    Event,
    LegEnded,
    LegStarted,
    LegUpdated,
    MetricSample,
    RecorderHeartbeat,
    RecordingArchived,
)

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str] = field(default_factory=dict)
    call_keyed: bool = True


LIFECYCLE = TopicSpec("rec.lifecycle.v1", {"retention.ms": str(30 * DAY_MS)})
AUDIO = TopicSpec(
    "rec.audio.v1",
    # 7 days: longer than the longest call plus a weekend of mixer outage.
    {"retention.ms": str(7 * DAY_MS), "max.message.bytes": str(2 * 1024 * 1024)},
)
RECORDERS = TopicSpec("rec.recorders.v1", {"retention.ms": str(1 * DAY_MS)}, call_keyed=False)
CALLS = TopicSpec("rec.calls.v1", {"cleanup.policy": "compact"})
RECORDINGS = TopicSpec("rec.recordings.v1", {"cleanup.policy": "compact"})
METRICS = TopicSpec("rec.metrics.v1", {"retention.ms": str(7 * DAY_MS)}, call_keyed=False)
DEADLETTER = TopicSpec("rec.deadletter.v1", {"retention.ms": str(30 * DAY_MS)}, call_keyed=False)
# Who listened to what is evidence: kept until an operator decides otherwise.
AUDIT = TopicSpec("rec.audit.v1", {"retention.ms": "-1"})

ALL_TOPICS: tuple[TopicSpec, ...] = (
    LIFECYCLE,
    AUDIO,
    RECORDERS,
    CALLS,
    RECORDINGS,
    METRICS,
    DEADLETTER,
    AUDIT,
)

TOPIC_OF: dict[type[Event], TopicSpec] = {
    LegStarted: LIFECYCLE,
    LegUpdated: LIFECYCLE,
    LegEnded: LIFECYCLE,
    AudioChunk: AUDIO,
    RecorderHeartbeat: RECORDERS,
    CallRecord: CALLS,
    RecordingArchived: RECORDINGS,
    MetricSample: METRICS,
    DeadLetter: DEADLETTER,
    AccessAudited: AUDIT,
}
