"""Avro single-object encoding of events (Avro spec, "Single object encoding").

Each value is ``C3 01`` + the 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's
parsing canonical form + the Avro binary body. An outside consumer needs only the ``.avsc`` files:
the fingerprint says which schema wrote the bytes, so one topic can carry several event types and
old writer versions (``history/``) are resolved into the current models by Avro schema resolution.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form
from pydantic import ValidationError

from callrec.avro.errors import InvalidEvent, UndecodableEvent
from callrec.avro.events import EVENT_TYPES, AudioChunk, Event
from callrec.avro.skim import SkimmedChunk, skim_chunk

MARKER = b"\xc3\x01"
HEADER_LEN = len(MARKER) + 8
SCHEMA_DIR = Path(__file__).parent / "schemas"
HISTORY_DIR = Path(__file__).parent / "history"


@dataclass(frozen=True)
class WriterSchema:
    """A schema some producer may have written with, and the model it decodes into."""

    fingerprint: bytes
    parsed: Any
    model: type[Event]
    reader: Any  # the current schema of that event type


def load_schema(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def schema_fingerprint(schema: dict[str, Any]) -> bytes:
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def full_name(schema: dict[str, Any]) -> str:
    return f"{schema['namespace']}.{schema['name']}"


@cache
def _registry() -> tuple[dict[type[Event], WriterSchema], dict[bytes, WriterSchema]]:
    models = {model.avro_name: model for model in EVENT_TYPES}
    current: dict[type[Event], WriterSchema] = {}
    for path in sorted(SCHEMA_DIR.glob("*.avsc")):
        schema = load_schema(path)
        model = models[full_name(schema)]
        parsed = fastavro.parse_schema(schema, named_schemas={})
        current[model] = WriterSchema(schema_fingerprint(schema), parsed, model, parsed)
    missing = set(EVENT_TYPES) - set(current)
    if missing:
        raise RuntimeError(f"no schema in {SCHEMA_DIR} for {sorted(m.__name__ for m in missing)}")
    by_fingerprint = {w.fingerprint: w for w in current.values()}
    for path in sorted(HISTORY_DIR.glob("*.avsc")):
        schema = load_schema(path)
        model = models[full_name(schema)]
        parsed = fastavro.parse_schema(schema, named_schemas={})
        fp = schema_fingerprint(schema)
        by_fingerprint.setdefault(fp, WriterSchema(fp, parsed, model, current[model].parsed))
    return current, by_fingerprint


def encode(event: Event) -> bytes:
    """Serialize an event as the contract says: marker, fingerprint, Avro binary."""
    writer = _registry()[0][type(event)]
    out = io.BytesIO()
    out.write(MARKER)
    out.write(writer.fingerprint)
    try:
        fastavro.schemaless_writer(out, writer.parsed, event.model_dump())
    except (ValueError, TypeError) as e:
        raise InvalidEvent(f"{type(event).__name__} does not fit its schema: {e}") from e
    return out.getvalue()


def writer_schema(model: type[Event]) -> dict[str, Any]:
    """The parsed current schema of an event type (for writers that encode it themselves)."""
    parsed: dict[str, Any] = _registry()[0][model].parsed
    return parsed


def header(model: type[Event]) -> bytes:
    """The single-object header (marker and fingerprint) ``encode`` writes for ``model``."""
    return MARKER + _registry()[0][model].fingerprint


def decode(data: bytes) -> Event:
    """Parse bytes from any topic of the contract into the current model of their event type."""
    if len(data) < HEADER_LEN or data[:2] != MARKER:
        raise UndecodableEvent("not Avro single-object encoded (no C3 01 marker)")
    writer = _registry()[1].get(data[2:HEADER_LEN])
    if writer is None:
        raise UndecodableEvent(f"unknown schema fingerprint {data[2:HEADER_LEN].hex()}")
    body = io.BytesIO(data[HEADER_LEN:])
    try:
        record = fastavro.schemaless_reader(body, writer.parsed, writer.reader)
    except Exception as e:  # fastavro raises many kinds on truncated or corrupt bodies
        raise UndecodableEvent(f"corrupt {writer.model.__name__} body: {e!r}") from e
    if body.tell() != len(data) - HEADER_LEN:
        raise UndecodableEvent(f"{writer.model.__name__} body has trailing bytes")
    try:
        return writer.model.model_validate(record)
    except ValidationError as e:
        raise InvalidEvent(f"{writer.model.__name__} breaks its model: {e}") from e


def decode_skimming(data: bytes) -> Event | SkimmedChunk:
    """``decode``, except that an AudioChunk of the current schema comes back skimmed: every
    field but its packets, which are counted and summed, not built (about 4x cheaper; see
    skim.py). For consumers that fold chunks without reading their audio (call state)."""
    if data[2:HEADER_LEN] == _audio_fingerprint() and data[:2] == MARKER:
        skimmed = skim_chunk(data, HEADER_LEN)
        if skimmed is not None:
            return skimmed
    return decode(data)


@cache
def _audio_fingerprint() -> bytes:
    return _registry()[0][AudioChunk].fingerprint


def event_type_name(data: bytes) -> str | None:
    """Event type of encoded bytes without decoding the body (for routing and dead letters)."""
    writer = _registry()[1].get(data[2:HEADER_LEN]) if data[:2] == MARKER else None
    return writer.model.__name__ if writer else None
