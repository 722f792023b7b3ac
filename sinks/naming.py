"""Where a recording lives in the bucket and what it says about itself.

The key is a function of the call alone (its start day and call key), never of the worker or the
time of mixing, so every retry and every replacement worker lands on the same object.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from urllib.parse import quote

from callrec.avro.events import CallRecord, Gap, RecordingArchived
from callrec.sinks.recording import MixedRecording

PREFIX = "recordings"
MANIFEST_PREFIX = "manifests"


def safe_call_key(call_key: str) -> str:
    """Percent-encode all but RFC 3986 unreserved characters: ':' becomes %3A, reversibly."""
    return quote(call_key, safe="-_.~")


def day_prefix(day: date) -> str:
    return f"{PREFIX}/{day:%Y/%m/%d}/"


def object_key(call: CallRecord, extension: str) -> str:
    day = day_prefix(call.started_at.astimezone(UTC))
    return f"{day}{safe_call_key(call.call_key)}.{extension}"


def gap_summary(gaps: tuple[Gap, ...]) -> str:
    """Gaps per cause as 'CAUSE=count/total_ms;...': the full list is in RecordingArchived."""
    counts: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for gap in gaps:
        counts[gap.cause.value] += 1
        totals[gap.cause.value] += gap.duration_ms
    return ";".join(f"{c}={counts[c]}/{totals[c]}ms" for c in sorted(counts)) or "none"


def object_metadata(call: CallRecord, mixed: MixedRecording) -> dict[str, str]:
    """User metadata (x-amz-meta-*): ASCII only, so free text is percent-encoded."""
    fields = {
        "call-key": call.call_key,
        "call-version": str(call.version),
        "status": call.status.value,
        "abnormal-reason": call.abnormal_reason.value if call.abnormal_reason else "",
        "partial": str(mixed.partial).lower(),
        "near-end-addr": call.near_end_addr or "",
        "near-end-device": call.near_end_device or "",
        "far-end-addr": call.far_end_addr or "",
        "far-end-device": call.far_end_device or "",
        "call-started-at": call.started_at.astimezone(UTC).isoformat(),
        "call-ended-at": call.ended_at.astimezone(UTC).isoformat() if call.ended_at else "",
        "recording-started-at": _iso_us(mixed.started_at_us),
        "duration-ms": str(mixed.duration_ms),
        "channels": str(mixed.channels),
        "sample-rate": str(mixed.sample_rate),
        "gaps": gap_summary(mixed.gaps),
        "sha256": mixed.sha256,
    }
    return {k: quote(v, safe=" -_.~:/=;+@,") for k, v in fields.items() if v}


def archived_event(
    call: CallRecord,
    mixed: MixedRecording,
    bucket: str,
    key: str,
    version_id: str | None,
    producer_id: str,
) -> RecordingArchived:
    return RecordingArchived(
        producer_id=producer_id,
        call_key=call.call_key,
        call_version=call.version,
        call_status=call.status,
        abnormal_reason=call.abnormal_reason.value if call.abnormal_reason else None,
        bucket=bucket,
        object_key=key,
        version_id=version_id,
        format=mixed.format.name,
        channels=mixed.channels,
        sample_rate=mixed.sample_rate,
        started_at=datetime.fromtimestamp(mixed.started_at_us / 1_000_000, UTC),
        duration_ms=mixed.duration_ms,
        size_bytes=mixed.size_bytes,
        sha256=mixed.sha256,
        partial=mixed.partial,
        gaps=list(mixed.gaps),
    )


def _iso_us(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1_000_000, UTC).isoformat()
