"""Contract bytes -> read-model rows without the pydantic models: the ingest hot path.

A replica reads every CallRecord and RecordingArchived the log holds when it starts from
scratch. Through ``codec.decode`` each one costs fastavro's decode into datetimes, UUIDs and
plain dicts, then a pydantic model with enums, which ``rows.py`` turns straight back into the
integers and strings it stores: about half of what ingest spent per record. Here the same bytes
are read with the current schema minus its logical types (times stay the microsecond longs they
are written as, the event id its string) and the row built from that dict.

Like ``avro/skim.py`` this reads only the current schemas of those two types (routed by their
single-object header) and gives up, returning None, at anything it is not sure of: a corrupt,
truncated or trailing body, an event id that is not a canonical UUID, a time near the edges of
what ``datetime`` holds. The caller then runs the contract decode, which reads the record or
says why not, so this never accepts a record the model path refuses, and the rows it builds are
the model path's to the byte (``tests/api/test_avro_rows.py``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

import fastavro

from callrec.api.rows import compact_json, recorders_text
from callrec.avro import codec
from callrec.avro.events import CallRecord, Event, RecordingArchived

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Well inside the years datetime can hold (1-9999): the contract decode decides the edges.
_MIN_US = -62_000_000_000_000_000
_MAX_US = 253_000_000_000_000_000

Row = tuple[object, ...]


class Decoded(NamedTuple):
    """One record's row and where it goes."""

    model: type[Event]
    call_key: str
    row: Row


def _in_range(t: int | None) -> bool:
    return t is None or _MIN_US < t < _MAX_US


def call_row(r: dict[str, Any]) -> Row | None:
    """``rows.call_row`` of a CallRecord read without logical types; None to give up."""
    legs = r["legs"]
    for leg in legs:
        if not (_MIN_US < leg["started_at"] < _MAX_US and _in_range(leg["ended_at"])
                and _in_range(leg["last_audio_at"])):
            return None
    if not (_MIN_US < r["event_time"] < _MAX_US and _MIN_US < r["started_at"] < _MAX_US
            and _in_range(r["ended_at"])):
        return None
    return (
        r["call_key"], r["version"], r["event_time"], r["status"], r["abnormal_reason"],
        r["abnormal_detail"], r["cluster_id"], r["near_end_addr"], r["near_end_device"],
        r["far_end_addr"], r["far_end_device"], r["destination"], r["started_at"],
        r["ended_at"], r["segments"], recorders_text(leg["recorder_id"] for leg in legs),
        compact_json([
            [leg["leg"], leg["leg_id"], leg["segment"], leg["recorder_id"], leg["codec"],
             leg["started_at"], leg["ended_at"], leg["end_reason"], leg["on_hold"],
             leg["chunk_count"], leg["packets_received"], leg["packets_lost"]]
            for leg in legs
        ]),
    )


def recording_row(r: dict[str, Any]) -> Row | None:
    """``rows.recording_row`` of a RecordingArchived read without logical types."""
    if not (_MIN_US < r["event_time"] < _MAX_US and _MIN_US < r["started_at"] < _MAX_US):
        return None
    return (
        r["call_key"], r["call_version"], r["event_time"], r["call_status"],
        r["abnormal_reason"], r["bucket"], r["object_key"], r["version_id"], r["format"],
        r["channels"], r["sample_rate"], r["started_at"], r["duration_ms"], r["size_bytes"],
        r["sha256"], int(r["partial"]),
        compact_json([
            {"leg": g["leg"], "start_ms": g["start_ms"], "duration_ms": g["duration_ms"],
             "cause": g["cause"]}
            for g in r["gaps"]
        ]),
    )


@dataclass(frozen=True)
class _Reader:
    model: type[Event]
    schema: Any  # parsed, without logical types
    build: Callable[[dict[str, Any]], Row | None]


def _plain(schema: Any) -> Any:
    """The schema with every ``logicalType`` dropped: the same bytes, read as longs and
    strings."""
    if isinstance(schema, dict):
        return {k: _plain(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_plain(v) for v in schema]
    return schema


@cache
def _readers() -> dict[bytes, _Reader]:
    """Keyed by the single-object header (marker + fingerprint) of each current schema."""
    readers: dict[bytes, _Reader] = {}
    for model, build in ((CallRecord, call_row), (RecordingArchived, recording_row)):
        schema = codec.load_schema(codec.SCHEMA_DIR / f"{model.__name__}.avsc")
        header = codec.header(model)
        if codec.MARKER + codec.schema_fingerprint(schema) != header:
            raise RuntimeError(f"{model.__name__}.avsc is not the schema codec writes with")
        parsed = fastavro.parse_schema(_plain(schema), named_schemas={})
        readers[header] = _Reader(model, parsed, build)
    return readers


def decode_row(value: bytes) -> Decoded | None:
    """The row of a current-schema CallRecord or RecordingArchived; None for anything else
    or anything doubtful (left to the contract decode)."""
    reader = _readers().get(value[:codec.HEADER_LEN])
    if reader is None:
        return None
    body = io.BytesIO(value[codec.HEADER_LEN:])
    try:
        record = fastavro.schemaless_reader(body, reader.schema, None)
    except Exception:  # fastavro raises many kinds on truncated or corrupt bodies
        return None
    if body.tell() != len(value) - codec.HEADER_LEN or not isinstance(record, dict):
        return None
    if not _UUID.fullmatch(record["event_id"]):
        return None
    row = reader.build(record)
    return None if row is None else Decoded(reader.model, record["call_key"], row)
