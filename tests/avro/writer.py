"""Bytes as any Avro writer of a schema produces them, in the contract's single-object encoding."""

from __future__ import annotations

import io
from typing import Any

import fastavro

from callrec.avro import codec
from callrec.avro.events import EVENT_TYPES

SCHEMAS = {
    model: codec.load_schema(codec.SCHEMA_DIR / f"{model.__name__}.avsc") for model in EVENT_TYPES
}


def write_with_schema(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema, named_schemas={}), record)
    return codec.MARKER + codec.schema_fingerprint(schema) + out.getvalue()
