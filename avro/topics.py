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
MAX_RECORD_BYTES = 2 * 1024 * 1024
"""The largest record any of our producers sends (its ``max_request_size``) and every topic's
``max.message.bytes``: one limit, so a record the producer accepts is never refused by the
broker, and one it refuses is refused at once, before it reaches the wire."""
_LIMIT = {"max.message.bytes": str(MAX_RECORD_BYTES)}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str] = field(default_factory=dict)
    call_keyed: bool = True


LIFECYCLE = TopicSpec("rec.lifecycle.v1", {"retention.ms": str(30 * DAY_MS), **_LIMIT})
# 7 days: longer than the longest call plus a weekend of mixer outage.
AUDIO = TopicSpec("rec.audio.v1", {"retention.ms": str(7 * DAY_MS), **_LIMIT})
RECORDERS = TopicSpec("rec.recorders.v1", {"retention.ms": str(1 * DAY_MS), **_LIMIT},
                      call_keyed=False)
CALLS = TopicSpec("rec.calls.v1", {"cleanup.policy": "compact", **_LIMIT})
RECORDINGS = TopicSpec("rec.recordings.v1", {"cleanup.policy": "compact", **_LIMIT})
METRICS = TopicSpec("rec.metrics.v1", {"retention.ms": str(7 * DAY_MS), **_LIMIT},
                    call_keyed=False)
DEADLETTER = TopicSpec("rec.deadletter.v1", {"retention.ms": str(30 * DAY_MS), **_LIMIT},
                       call_keyed=False)
# Who listened to what is evidence: kept until an operator decides otherwise.
AUDIT = TopicSpec("rec.audit.v1", {"retention.ms": "-1", **_LIMIT})

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
