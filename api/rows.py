"""Events -> read-model rows, and the search filter: pure, no SQL, no I/O.

The read model keeps one row per call and one per recording. Times are stored as microseconds
since the epoch (UTC) so that ordering and range filters are integer comparisons on an index.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from callrec.avro.events import AccessAudited, CallRecord, RecordingArchived

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    """Exact integer microseconds (the float of ``timestamp()`` is off by one now and then);
    the same integer the contract writes a ``timestamp-micros`` as."""
    return (moment - EPOCH) // _MICROSECOND


def from_micros(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + timedelta(microseconds=value)


def compact_json(value: object) -> str:
    """``legs_json`` and ``gaps_json``: compact JSON, the same text whichever path built it."""
    return orjson.dumps(value).decode()


def recorders_text(recorder_ids: Iterable[str]) -> str:
    """``,rec-1,rec-2,``: a recorder filter is one ``instr`` on the delimited names."""
    return "," + ",".join(sorted(set(recorder_ids))) + ","


LEG_FIELDS = ("leg", "leg_id", "segment", "recorder_id", "codec", "started_at", "ended_at",
              "end_reason", "on_hold", "chunk_count", "packets_received", "packets_lost")
"""The columns of each leg in ``legs_json``: lists, times in microseconds (cheap to write; the
read model writes far more often than a call's detail is read)."""


def leg_fields(values: list[object]) -> dict[str, object]:
    """One stored leg -> named fields, times as UTC datetimes."""
    leg = dict(zip(LEG_FIELDS, values, strict=True))
    leg["started_at"] = from_micros(leg["started_at"])  # type: ignore[arg-type]
    leg["ended_at"] = from_micros(leg["ended_at"])  # type: ignore[arg-type]
    return leg


def call_row(call: CallRecord) -> tuple[object, ...]:
    """The ``calls`` columns, in the order of ``queries.CALL_COLUMNS``."""
    legs = [
        [leg.leg.value, leg.leg_id, leg.segment, leg.recorder_id, leg.codec,
         micros(leg.started_at), micros(leg.ended_at) if leg.ended_at else None,
         leg.end_reason, leg.on_hold, leg.chunk_count, leg.packets_received, leg.packets_lost]
        for leg in call.legs
    ]
    return (
        call.call_key, call.version, micros(call.event_time), call.status.value,
        call.abnormal_reason.value if call.abnormal_reason else None, call.abnormal_detail,
        call.cluster_id, call.near_end_addr, call.near_end_device, call.far_end_addr,
        call.far_end_device, call.destination, micros(call.started_at),
        micros(call.ended_at) if call.ended_at else None, call.segments,
        recorders_text(leg.recorder_id for leg in call.legs), compact_json(legs),
    )


def recording_row(rec: RecordingArchived) -> tuple[object, ...]:
    """The ``recordings`` columns, in the order of ``queries.RECORDING_COLUMNS``."""
    gaps = [
        {"leg": g.leg.value if g.leg else None, "start_ms": g.start_ms,
         "duration_ms": g.duration_ms, "cause": g.cause.value}
        for g in rec.gaps
    ]
    return (
        rec.call_key, rec.call_version, micros(rec.event_time), rec.call_status.value,
        rec.abnormal_reason, rec.bucket, rec.object_key, rec.version_id, rec.format,
        rec.channels, rec.sample_rate, micros(rec.started_at), rec.duration_ms, rec.size_bytes,
        rec.sha256, int(rec.partial), compact_json(gaps),
    )


def audit_row(event: AccessAudited) -> tuple[object, ...]:
    """The ``audit`` columns, in the order of ``queries.AUDIT_COLUMNS``."""
    return (
        str(event.event_id), micros(event.event_time), event.producer_id, event.call_key,
        event.action.value, event.actor, event.token_id, event.role, event.client_addr,
        event.user_agent, event.object_key, event.version_id, event.range_start,
        event.range_end, event.outcome,
    )


@dataclass(frozen=True)
class CallFilter:
    """What ``GET /calls`` narrows by; ``None`` means no condition."""

    started_from: datetime | None = None
    started_to: datetime | None = None
    party: str | None = None
    device: str | None = None
    cluster: str | None = None
    status: str | None = None
    abnormal_reason: str | None = None
    recorder: str | None = None
    has_recording: bool | None = None


@dataclass(frozen=True)
class Cursor:
    """Where the previous page stopped: newest first by (started_at, call_key)."""

    started_us: int
    call_key: str

    def encode(self) -> str:
        raw = json.dumps([self.started_us, self.call_key]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Raises ValueError on anything this server did not hand out."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            started, key = json.loads(raw)
        except (binascii.Error, ValueError, TypeError) as e:
            raise ValueError("not a cursor this server handed out") from e
        if not isinstance(started, int) or not isinstance(key, str):
            raise ValueError("not a cursor this server handed out")
        return cls(started, key)


def prefix_bounds(prefix: str) -> tuple[str, str]:
    """A half-open string range holding exactly the strings that start with ``prefix``, so a
    prefix search is an index range scan (LIKE would escape badly and skip the index)."""
    return prefix, prefix + "\U0010ffff"
