"""Read-model rows -> public schemas: the only place that knows both shapes."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from callrec.api.objects import content_type
from callrec.api.rows import from_micros, leg_fields
from callrec.api.schemas import (
    AuditEntry,
    CallPublic,
    CallSummary,
    GapPublic,
    LegPublic,
    Party,
    RecordingBrief,
    RecordingPublic,
)


def _at(value: int) -> datetime:
    moment = from_micros(value)
    assert moment is not None
    return moment


def summary(row: sqlite3.Row) -> CallSummary:
    recording = None
    if row["has_recording"]:
        recording = RecordingBrief(format=row["format"], duration_ms=row["duration_ms"],
                                   partial=bool(row["partial"]))
    return CallSummary(
        call_key=row["call_key"], version=row["version"], status=row["status"],
        abnormal_reason=row["abnormal_reason"], cluster_id=row["cluster_id"],
        near_end_addr=row["near_end_addr"], near_end_device=row["near_end_device"],
        far_end_addr=row["far_end_addr"], far_end_device=row["far_end_device"],
        started_at=_at(row["started_at_us"]), ended_at=from_micros(row["ended_at_us"]),
        recorders=[r for r in row["recorders"].split(",") if r], recording=recording,
    )


def recording(row: sqlite3.Row) -> RecordingPublic:
    return RecordingPublic(
        format=row["format"], content_type=content_type(row["format"]),
        channels=row["channels"], sample_rate=row["sample_rate"],
        started_at=_at(row["started_at_us"]), duration_ms=row["duration_ms"],
        size_bytes=row["size_bytes"], sha256=row["sha256"], partial=bool(row["partial"]),
        object_key=row["object_key"], version_id=row["version_id"],
        archived_at=_at(row["event_time_us"]), call_version=row["call_version"],
        gaps=[GapPublic(**g) for g in json.loads(row["gaps_json"])],
    )


def call(row: sqlite3.Row, rec: sqlite3.Row | None) -> CallPublic:
    return CallPublic(
        call_key=row["call_key"], version=row["version"], status=row["status"],
        abnormal_reason=row["abnormal_reason"], abnormal_detail=row["abnormal_detail"],
        cluster_id=row["cluster_id"], destination=row["destination"],
        started_at=_at(row["started_at_us"]), ended_at=from_micros(row["ended_at_us"]),
        segments=row["segments"], updated_at=_at(row["event_time_us"]),
        parties=[
            Party(side="near_end", number=row["near_end_addr"], device=row["near_end_device"]),
            Party(side="far_end", number=row["far_end_addr"], device=row["far_end_device"]),
        ],
        legs=[LegPublic.model_validate(leg_fields(leg)) for leg in json.loads(row["legs_json"])],
        recording=recording(rec) if rec is not None else None,
    )


def audit_entry(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        event_id=row["event_id"], time=_at(row["event_time_us"]), call_key=row["call_key"],
        action=row["action"], actor=row["actor"], token_id=row["token_id"], role=row["role"],
        client_addr=row["client_addr"], user_agent=row["user_agent"],
        range_start=row["range_start"], range_end=row["range_end"], outcome=row["outcome"],
        replica=row["producer_id"],
    )
