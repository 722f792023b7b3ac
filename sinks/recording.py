"""A terminal call and its chunks -> one encoded recording with its gap list and hash.

The steps are the house's shape: plan (pure) -> decode (PyAV) -> render (pure) -> encode (PyAV).
Nothing here talks to Kafka or S3, so the worker, the benchmark and the tests share it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from callrec.avro.events import AudioChunk, CallRecord, CallStatus, Gap
from callrec.sinks.decode import DecodeFailure, decode_legs
from callrec.sinks.encode import RecordingFormat, encode
from callrec.sinks.render import Rendered, render
from callrec.sinks.timeline import PlacedLeg, plan_leg

MAX_EMPTY_CALL_US = 4 * 3600 * 1_000_000
"""A call without any audio still gets a file of its length in silence, up to this long."""


@dataclass(frozen=True)
class MixedRecording:
    data: bytes
    sha256: str
    format: RecordingFormat
    channels: int
    sample_rate: int
    started_at_us: int
    duration_ms: int
    gaps: tuple[Gap, ...]
    partial: bool
    failures: tuple[DecodeFailure, ...]
    shifted_runs: int = 0
    """Runs placed after an earlier run of their leg instead of on their arrival (a metric)."""


def plan_call(call: CallRecord, chunks: Iterable[AudioChunk]) -> list[PlacedLeg]:
    """Plan every leg that sent audio; the CallRecord says how many chunks each leg had."""
    by_leg: dict[str, list[AudioChunk]] = {}
    for chunk in chunks:
        by_leg.setdefault(chunk.leg_id, []).append(chunk)
    last_seq = {leg.leg_id: leg.last_chunk_seq for leg in call.legs}
    plans = []
    for leg_id in sorted(by_leg):
        plan = plan_leg(by_leg[leg_id], last_seq.get(leg_id))
        if plan is not None:
            plans.append(plan)
    return plans


def render_call(call: CallRecord, chunks: Iterable[AudioChunk], channels: int) -> tuple[
    Rendered, list[DecodeFailure]
]:
    legs = plan_call(call, chunks)
    decoded, failures = decode_legs(legs)
    rendered = render(legs, decoded, channels, _empty_call_us(call))
    return rendered, failures


def mix_call(
    call: CallRecord, chunks: Iterable[AudioChunk], fmt: RecordingFormat, channels: int
) -> MixedRecording:
    """Everything the archive needs to store one call; a call with lost audio is flagged."""
    rendered, failures = render_call(call, chunks, channels)
    data = encode(rendered.samples, rendered.sample_rate, fmt)
    partial = call.status == CallStatus.ABNORMAL or rendered.missing_audio
    return MixedRecording(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt,
        channels=channels,
        sample_rate=rendered.sample_rate,
        started_at_us=rendered.started_at_us,
        duration_ms=rendered.duration_ms,
        gaps=rendered.gaps,
        partial=partial,
        failures=tuple(failures),
        shifted_runs=rendered.shifted_runs,
    )


def _empty_call_us(call: CallRecord) -> tuple[int, int]:
    start = _micros(call.started_at.timestamp())
    end = _micros(call.ended_at.timestamp()) if call.ended_at else start
    return start, min(max(0, end - start), MAX_EMPTY_CALL_US)


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)
