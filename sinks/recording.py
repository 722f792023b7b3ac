"""A terminal call and its chunks -> one encoded recording with its gap list and hash.

The steps are the house's shape: plan (pure) -> decode (PyAV) -> render (pure) -> encode (PyAV).
Nothing here talks to Kafka or S3, so the worker, the benchmark and the tests share it. The
worker's path (``mix_call``) never holds the call's samples whole: an 8-hour trader line is
decoded to a file, then rendered and encoded a window at a time into the output file.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from callrec.avro.events import AudioChunk, CallRecord, CallStatus, Gap
from callrec.sinks.decode import DecodeFailure, decode_into, decode_legs
from callrec.sinks.decoded import DecodedAudio
from callrec.sinks.encode import Encoder, RecordingFormat
from callrec.sinks.packets import ChunkPackets
from callrec.sinks.placed import PlacedLeg
from callrec.sinks.render import Rendered, layout, render
from callrec.sinks.timeline import plan_leg

MAX_EMPTY_CALL_US = 4 * 3600 * 1_000_000
"""A call without any audio still gets a file of its length in silence, up to this long."""


@dataclass(frozen=True)
class MixedRecording:
    """What was encoded into the output file, and how it came out."""

    size_bytes: int
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


Chunks = Iterable[AudioChunk | ChunkPackets]


def plan_call(call: CallRecord, chunks: Chunks) -> list[PlacedLeg]:
    """Plan every leg that sent audio; the CallRecord says how many chunks each leg had."""
    return list(_planned(call, chunks))


def _planned(call: CallRecord, chunks: Chunks) -> Iterator[PlacedLeg]:
    """The legs' plans one at a time (each holds its leg's chunks until it is decoded)."""
    by_leg: dict[str, list[AudioChunk | ChunkPackets]] = {}
    for chunk in chunks:
        by_leg.setdefault(chunk.leg_id, []).append(chunk)
    last_seq = {leg.leg_id: leg.last_chunk_seq for leg in call.legs}
    for leg_id in sorted(by_leg):
        plan = plan_leg(by_leg.pop(leg_id), last_seq.get(leg_id))
        if plan is not None:
            yield plan


def render_call(call: CallRecord, chunks: Chunks, channels: int) -> tuple[
    Rendered, list[DecodeFailure]
]:
    legs = plan_call(call, chunks)
    decoded, failures = decode_legs(legs)
    rendered = render(legs, decoded, channels, _empty_call_us(call))
    return rendered, failures


def mix_call(
    call: CallRecord, chunks: Chunks, fmt: RecordingFormat, channels: int,
    out: BinaryIO, workdir: Path | None = None,
) -> MixedRecording:
    """Encode the call into ``out`` (a seekable file) and say what it holds; a call with lost
    audio is flagged. Memory stays bounded whatever the call's length: decoded samples go to a
    temporary file in ``workdir`` and are mixed and encoded a window at a time."""
    with DecodedAudio(workdir) as samples:
        legs, failures = [], []
        for leg in _planned(call, chunks):  # one leg's joined payloads alive at a time
            failures += decode_into([leg], samples.put)
            legs.append(replace(leg, chunks=()))
        plan = layout(legs, samples, channels, _empty_call_us(call))
        with Encoder(out, plan.sample_rate, channels, fmt) as encoder:
            for block in plan.windows(samples):
                encoder.write(block)
    size, digest = _size_and_hash(out)
    return MixedRecording(
        size_bytes=size,
        sha256=digest,
        format=fmt,
        channels=channels,
        sample_rate=plan.sample_rate,
        started_at_us=plan.started_at_us,
        duration_ms=plan.duration_ms,
        gaps=plan.gaps,
        partial=call.status == CallStatus.ABNORMAL or plan.missing_audio,
        failures=tuple(failures),
        shifted_runs=plan.shifted_runs,
    )


def _size_and_hash(out: BinaryIO) -> tuple[int, str]:
    """file_digest hashes an in-memory file's buffer in place and reads a real one into one
    reused buffer: the output is never copied to be hashed."""
    size = out.seek(0, io.SEEK_END)
    out.seek(0)
    digest = hashlib.file_digest(out, "sha256")  # type: ignore[arg-type]  # BinaryIO has readinto
    out.seek(0)
    return size, digest.hexdigest()


def _empty_call_us(call: CallRecord) -> tuple[int, int]:
    start = _micros(call.started_at.timestamp())
    end = _micros(call.ended_at.timestamp()) if call.ended_at else start
    return start, min(max(0, end - start), MAX_EMPTY_CALL_US)


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)
