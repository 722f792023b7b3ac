"""Which topic feeds which part of the state, and what the exporter does with a bad record.

No I/O here: `route` takes one Kafka record and the time it was read, folds it into the state,
and returns the error if the record cannot be used, for the adapter to dead-letter or count.
"""

from __future__ import annotations

from dataclasses import dataclass

from callrec.avro import codec
from callrec.avro.errors import ContractError, UndecodableEvent
from callrec.avro.events import (
    CallRecord,
    Event,
    MetricSample,
    RecorderHeartbeat,
    RecordingArchived,
)
from callrec.avro.topics import AUDIO, CALLS, METRICS, RECORDERS, RECORDINGS
from callrec.exporter.errors import ExporterError
from callrec.exporter.state import ExporterState

EXPECTED: dict[str, type[Event]] = {
    METRICS.name: MetricSample,
    RECORDERS.name: RecorderHeartbeat,
    CALLS.name: CallRecord,
    RECORDINGS.name: RecordingArchived,
}
DEAD_LETTERED = frozenset({METRICS.name})
"""Topics whose bad records the exporter dead-letters: it is rec.metrics.v1's only reader. Bad
heartbeats, snapshots and chunks are only counted: their own consumers dead-letter them, and
every exporter replica would repeat the dead letter."""


class UnexpectedEvent(ExporterError):
    """A well-formed event of a type that does not belong on the topic it was read from."""


@dataclass(frozen=True, slots=True)
class Read:
    topic: str
    value: bytes


def route(state: ExporterState, record: Read, read_at_us: int) -> Exception | None:
    """Fold one record into the state; the reason it was unusable, or None."""
    try:
        if record.topic == AUDIO.name:
            state.observe_chunk(event_time_us(record.value), read_at_us)
            return None
        event = codec.decode(record.value)
        expected = EXPECTED[record.topic]
        if not isinstance(event, expected):
            raise UnexpectedEvent(f"{type(event).__name__} on {record.topic}, "
                                  f"which carries {expected.__name__}")
        if isinstance(event, MetricSample):
            state.apply_sample(event)
        elif isinstance(event, RecorderHeartbeat):
            state.apply_heartbeat(event)
        elif isinstance(event, CallRecord):
            state.apply_call(event)
        elif isinstance(event, RecordingArchived):
            state.apply_recording(event)
    except (ContractError, ExporterError) as e:
        return e
    return None


def event_time_us(value: bytes) -> int:
    """`event_time` of a single-object encoded event without decoding the rest of it.

    Every contract event starts with `event_id` (a string) then `event_time` (a long), so the
    time is the second field of the Avro body: a length-prefixed string, then a zig-zag varint.
    An audio chunk is ~2 KB of packets; this reads ~40 bytes of it.
    """
    if value[: len(codec.MARKER)] != codec.MARKER or len(value) < codec.HEADER_LEN + 2:
        raise UndecodableEvent("not a single-object encoded event")
    length, at = _varint(value, codec.HEADER_LEN)
    at += length
    time_us, _ = _varint(value, at)
    return time_us


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """An Avro zig-zag varint at ``at``: (value, position after it)."""
    shift = raw = 0
    while True:
        if at >= len(data) or shift > 63:
            raise UndecodableEvent("truncated Avro varint")
        byte = data[at]
        at += 1
        raw |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (raw >> 1) ^ -(raw & 1), at
        shift += 7
