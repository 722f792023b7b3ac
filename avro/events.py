"""Pydantic twins of the Avro schemas in ``schemas/``.

The ``.avsc`` files are the contract; these models are how Python code builds and reads events.
``tests/avro`` proves each model has exactly its schema's fields and round-trips through it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field


def utc_now() -> datetime:
    return datetime.now(UTC)


class Leg(StrEnum):
    NEAR_END = "NEAR_END"
    FAR_END = "FAR_END"


class LegChange(StrEnum):
    OTHER = "OTHER"
    SESSION_REFRESH = "SESSION_REFRESH"
    HOLD = "HOLD"
    RESUME = "RESUME"
    CODEC_CHANGE = "CODEC_CHANGE"
    MEDIA_ADDRESS_CHANGE = "MEDIA_ADDRESS_CHANGE"
    PARTY_CHANGE = "PARTY_CHANGE"


class LegEndReason(StrEnum):
    OTHER = "OTHER"
    BYE = "BYE"
    CANCEL = "CANCEL"
    CODEC_MISMATCH = "CODEC_MISMATCH"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    MEDIA_TIMEOUT = "MEDIA_TIMEOUT"
    RECORDER_SHUTDOWN = "RECORDER_SHUTDOWN"
    ERROR = "ERROR"


class RecorderHealth(StrEnum):
    UNKNOWN = "UNKNOWN"
    HEALTHY = "HEALTHY"
    DRAINING = "DRAINING"
    UNAVAILABLE = "UNAVAILABLE"


class CallStatus(StrEnum):
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    ABNORMAL = "ABNORMAL"


class AbnormalReason(StrEnum):
    OTHER = "OTHER"
    RECORDER_LOST = "RECORDER_LOST"
    MEDIA_TIMEOUT = "MEDIA_TIMEOUT"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    HALF_CALL = "HALF_CALL"
    ENDED_WITHOUT_BYE = "ENDED_WITHOUT_BYE"


class GapCause(StrEnum):
    OTHER = "OTHER"
    LOST_PACKETS = "LOST_PACKETS"
    HOLD = "HOLD"
    NO_AUDIO = "NO_AUDIO"
    UNDECODABLE = "UNDECODABLE"
    LOST_CHUNKS = "LOST_CHUNKS"
    MISSING_LEG = "MISSING_LEG"


class Record(BaseModel):
    """A nested Avro record (no event header)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Event(Record):
    """Every event carries an id to deduplicate on, the time of its fact and who emitted it."""

    avro_name: ClassVar[str]

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    event_time: datetime = Field(default_factory=utc_now)
    producer_id: str

    @property
    def kafka_key(self) -> bytes:
        raise NotImplementedError


class CallEvent(Event):
    call_key: str

    @property
    def kafka_key(self) -> bytes:
        return self.call_key.encode()


class LegStarted(CallEvent):
    avro_name: ClassVar[str] = "callrec.v1.LegStarted"

    leg: Leg
    leg_id: str
    recorder_id: str
    recorder_incarnation: str
    sip_call_id: str
    from_tag: str
    to_tag: str
    cisco_guid: str | None = None
    cluster_id: str
    refci: str
    far_end_refci: str | None = None
    near_end_addr: str | None = None
    near_end_device: str | None = None
    near_end_cluster_id: str | None = None
    near_end_guid: str | None = None
    far_end_addr: str | None = None
    far_end_device: str | None = None
    far_end_cluster_id: str | None = None
    far_end_guid: str | None = None
    destination: str
    from_display: str | None = None
    from_params: dict[str, str] = Field(default_factory=dict)
    signaling_peer: str
    codec: str
    payload_type: int
    clock_rate: int
    telephone_event_pt: int | None = None
    media_direction: str
    remote_rtp_addr: str
    local_rtp_port: int
    session_expires_s: int | None = None
    segment: int = 0


class LegUpdated(CallEvent):
    avro_name: ClassVar[str] = "callrec.v1.LegUpdated"

    leg: Leg
    leg_id: str
    change: LegChange
    sip_method: str
    media_direction: str | None = None
    codec: str | None = None
    payload_type: int | None = None
    clock_rate: int | None = None
    remote_rtp_addr: str | None = None
    session_expires_s: int | None = None
    far_end_addr: str | None = None
    far_end_device: str | None = None
    from_params: dict[str, str] = Field(default_factory=dict)


class LegEnded(CallEvent):
    avro_name: ClassVar[str] = "callrec.v1.LegEnded"

    leg: Leg
    leg_id: str
    reason: LegEndReason
    sip_reason: str | None = None
    q850_cause: int | None = None
    packets_received: int
    packets_lost: int
    payload_bytes: int
    chunk_count: int
    rtp_dropped: dict[str, int] = Field(default_factory=dict)


class RtpPacket(Record):
    rtp_seq: int
    rtp_timestamp: int
    ssrc: int
    payload_type: int
    marker: bool
    arrival_time_us: int
    payload: bytes


class AudioChunk(CallEvent):
    avro_name: ClassVar[str] = "callrec.v1.AudioChunk"

    leg: Leg
    leg_id: str
    chunk_seq: int
    codec: str
    payload_type: int
    clock_rate: int
    packets: list[RtpPacket]
    packets_lost: int
    packets_reordered: int
    packets_duplicated: int
    ssrc_changes: int


class RecorderHeartbeat(Event):
    avro_name: ClassVar[str] = "callrec.v1.RecorderHeartbeat"

    recorder_id: str
    incarnation: str
    heartbeat_seq: int
    interval_ms: int
    health: RecorderHealth
    health_reasons: list[str] = Field(default_factory=list)
    active_legs: int
    active_leg_ids: list[str] = Field(default_factory=list)
    max_legs: int
    spool_bytes: int = 0
    spool_oldest_age_ms: int = 0
    spool_refuse_bytes: int = 0
    spool_max_bytes: int = 0
    sip_address: str
    rtp_dropped: dict[str, int] = Field(default_factory=dict)

    @property
    def kafka_key(self) -> bytes:
        return self.recorder_id.encode()


class LegSummary(Record):
    leg: Leg
    leg_id: str
    segment: int
    recorder_id: str
    recorder_incarnation: str
    codec: str
    started_at: datetime
    ended_at: datetime | None = None
    end_reason: str | None = None
    on_hold: bool = False
    chunk_count: int
    last_chunk_seq: int = -1
    packets_received: int
    packets_lost: int
    payload_bytes: int
    last_audio_at: datetime | None = None


class CallRecord(CallEvent):
    avro_name: ClassVar[str] = "callrec.v1.CallRecord"

    version: int
    status: CallStatus
    abnormal_reason: AbnormalReason | None = None
    abnormal_detail: str | None = None
    cluster_id: str
    refci: str
    near_end_addr: str | None = None
    near_end_device: str | None = None
    far_end_addr: str | None = None
    far_end_device: str | None = None
    far_end_guid: str | None = None
    destination: str | None = None
    started_at: datetime
    ended_at: datetime | None = None
    segments: int = 1
    legs: list[LegSummary]
    first_audio_partition: int | None = None
    first_audio_offset: int | None = None
    reopened: int = 0


class Gap(Record):
    leg: Leg | None = None
    start_ms: int
    duration_ms: int
    cause: GapCause


class RecordingArchived(CallEvent):
    avro_name: ClassVar[str] = "callrec.v1.RecordingArchived"

    call_version: int
    call_status: CallStatus
    abnormal_reason: str | None = None
    bucket: str
    object_key: str
    version_id: str | None = None
    format: str
    channels: int
    sample_rate: int
    started_at: datetime
    duration_ms: int
    size_bytes: int
    sha256: str
    partial: bool
    gaps: list[Gap] = Field(default_factory=list)
    supersedes_version_id: str | None = None
    supersedes_call_version: int | None = None


class MetricSample(Event):
    avro_name: ClassVar[str] = "callrec.v1.MetricSample"

    metric: str
    labels: dict[str, str] = Field(default_factory=dict)
    window_start: datetime
    window_end: datetime
    value: float

    @property
    def kafka_key(self) -> bytes:
        return self.metric.encode()


class DeadLetter(Event):
    avro_name: ClassVar[str] = "callrec.v1.DeadLetter"

    source_topic: str
    source_partition: int
    source_offset: int
    source_key: bytes | None = None
    payload: bytes
    payload_size: int | None = None
    payload_sha256: str | None = None
    error_type: str
    reason: str

    @property
    def kafka_key(self) -> bytes:
        return self.source_topic.encode()


class AccessAction(StrEnum):
    OTHER = "OTHER"
    PLAY = "PLAY"
    DOWNLOAD = "DOWNLOAD"
    VERIFY = "VERIFY"


class AccessAudited(CallEvent):
    avro_name: ClassVar[str] = "callrec.v1.AccessAudited"

    action: AccessAction
    actor: str
    token_id: str
    role: str
    client_addr: str | None = None
    user_agent: str | None = None
    object_key: str | None = None
    version_id: str | None = None
    range_start: int | None = None
    range_end: int | None = None
    outcome: str | None = None


EVENT_TYPES: tuple[type[Event], ...] = (
    LegStarted,
    LegUpdated,
    LegEnded,
    AudioChunk,
    RecorderHeartbeat,
    CallRecord,
    RecordingArchived,
    MetricSample,
    DeadLetter,
    AccessAudited,
)
