"""Contract events for the exporter's tests, shaped as the stack writes them."""

from __future__ import annotations

import time
import uuid

from callrec.avro.events import (
    CallRecord,
    CallStatus,
    LegSummary,
    MetricSample,
    RecorderHealth,
    RecorderHeartbeat,
    RecordingArchived,
)
from tests.streams.factory import Call, at

T0 = 1_790_000_000_000_000
WINDOW_S = 10


def us(seconds: float) -> int:
    return int(seconds * 1_000_000)


def now_us() -> int:
    return time.time_ns() // 1000


def sample(metric: str, value: float, labels: dict[str, str], window: int,
           producer: str = "streams-1", t0: int = T0) -> MetricSample:
    start = t0 + us(window * WINDOW_S)
    return MetricSample(producer_id=producer, metric=metric, labels=labels,
                        window_start=at(start), window_end=at(start + us(WINDOW_S)), value=value)


def beat(recorder: str, at_us: int, *, health: RecorderHealth = RecorderHealth.HEALTHY,
         spool_bytes: int = 0, seq: int = 0, reasons: tuple[str, ...] = ()) -> RecorderHeartbeat:
    return RecorderHeartbeat(
        event_time=at(at_us), producer_id=recorder, recorder_id=recorder, incarnation="inc-1",
        heartbeat_seq=seq, interval_ms=1000, health=health, active_legs=2, max_legs=100,
        spool_bytes=spool_bytes, sip_address="127.0.0.1:5060", health_reasons=list(reasons),
    )


def call_record(call: Call, status: CallStatus, ended_s: float | None) -> CallRecord:
    leg = LegSummary(leg="NEAR_END", leg_id=f"{call.key}/n", segment=0, recorder_id=call.recorder,
                     recorder_incarnation="inc-1", codec="PCMU", started_at=at(call.t0),
                     chunk_count=1, packets_received=10, packets_lost=0, payload_bytes=1600)
    return CallRecord(
        producer_id="streams-1", call_key=call.key, version=1, status=status,
        cluster_id=call.cluster, refci=call.refci, started_at=at(call.t0),
        ended_at=None if ended_s is None else at(call.t0 + us(ended_s)), legs=[leg],
    )


def archived(call: Call, at_s: float, duration_ms: int) -> RecordingArchived:
    return RecordingArchived(
        event_time=at(call.t0 + us(at_s)), producer_id="mixer-1", call_key=call.key,
        call_version=1, call_status=CallStatus.COMPLETED, bucket="recordings",
        object_key=f"recordings/{uuid.uuid4()}.wav", format="wav", channels=2,
        sample_rate=8000, started_at=at(call.t0), duration_ms=duration_ms, size_bytes=1000,
        sha256="0" * 64, partial=False,
    )
