"""Public response schemas (the OpenAPI contract): CallPublic, CallsPublic and kin.

Times are UTC ISO 8601. These models are built from read-model rows in ``present.py``; routes
never hand out rows directly.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from callrec.avro.events import AbnormalReason, CallStatus


class Problem(BaseModel):
    """An error: what went wrong, in words."""

    detail: str


class RecordingBrief(BaseModel):
    format: str
    duration_ms: int
    partial: bool


class CallSummary(BaseModel):
    """One row of a search: enough to choose a call."""

    call_key: str
    version: int
    status: CallStatus
    abnormal_reason: AbnormalReason | None
    cluster_id: str
    near_end_addr: str | None
    near_end_device: str | None
    far_end_addr: str | None
    far_end_device: str | None
    started_at: datetime
    ended_at: datetime | None
    recorders: list[str]
    recording: RecordingBrief | None


class CallsPublic(BaseModel):
    data: list[CallSummary]
    count: int = Field(description="Calls matching the filters, across all pages.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; "
                                                "null on the last page.")


class LegPublic(BaseModel):
    leg: str
    leg_id: str
    segment: int
    recorder_id: str
    codec: str
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    on_hold: bool
    chunk_count: int
    packets_received: int
    packets_lost: int


class GapPublic(BaseModel):
    leg: str | None
    start_ms: int
    duration_ms: int
    cause: str


class Party(BaseModel):
    side: str = Field(description="near_end (the recorded party) or far_end.")
    number: str | None
    device: str | None


class RecordingPublic(BaseModel):
    format: str
    content_type: str
    channels: int
    sample_rate: int
    started_at: datetime
    duration_ms: int
    size_bytes: int
    sha256: str
    partial: bool
    object_key: str
    version_id: str | None
    archived_at: datetime
    call_version: int
    gaps: list[GapPublic]


class CallPublic(BaseModel):
    call_key: str
    version: int
    status: CallStatus
    abnormal_reason: AbnormalReason | None
    abnormal_detail: str | None
    cluster_id: str
    destination: str | None
    started_at: datetime
    ended_at: datetime | None
    segments: int
    updated_at: datetime
    parties: list[Party]
    legs: list[LegPublic]
    recording: RecordingPublic | None


class PlaybackPublic(BaseModel):
    """Short-lived signed URLs for an <audio> element and a download link."""

    play_url: str
    download_url: str | None = Field(description="Only for auditors and admins.")
    expires_at: datetime


class PeaksPublic(BaseModel):
    """Waveform of the recording: per bucket, the loudest sample of each channel (0..255)."""

    buckets: int
    channels: int
    duration_ms: int
    peaks: list[list[int]]


class CheckPublic(BaseModel):
    name: str
    ok: bool | None = Field(description="null when the check could not be made yet.")
    detail: str


class VerifyPublic(BaseModel):
    call_key: str
    ok: bool = Field(description="Every check that could be made passed.")
    sha256_archived: str
    sha256_stored: str | None
    checks: list[CheckPublic]


class AuditEntry(BaseModel):
    event_id: str
    time: datetime
    call_key: str
    action: str
    actor: str
    token_id: str
    role: str
    client_addr: str | None
    user_agent: str | None
    range_start: int | None
    range_end: int | None
    outcome: str | None
    replica: str


class AuditPublic(BaseModel):
    data: list[AuditEntry]
    next_before: datetime | None


class Me(BaseModel):
    name: str
    role: str
    token_id: str


class Health(BaseModel):
    replica: str
    ready: bool
    lag: int = Field(description="Records of the three topics not yet applied.")
    applied: int
    resumed_from: int
    error: str | None
    cache: dict[str, int] = Field(default_factory=dict, description=(
        "The recording cache: entries, bytes, hits, misses, filled, refused (bytes that did "
        "not match the archived sha256), evicted, expired."))
