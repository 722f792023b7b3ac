"""Bytes as any Avro writer of a schema produces them, in the contract's single-object encoding."""

from __future__ import annotations

import io
from typing import Any

import fastavro
from hypothesis import strategies as st

from callrec.avro import codec
from callrec.avro.events import EVENT_TYPES

SCHEMAS = {
    model: codec.load_schema(codec.SCHEMA_DIR / f"{model.__name__}.avsc") for model in EVENT_TYPES
}


def write_with_schema(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema, named_schemas={}), record)
    return codec.MARKER + codec.schema_fingerprint(schema) + out.getvalue()


DAMAGE = {"cut": st.integers(0, 4000), "noise": st.binary(min_size=1, max_size=3),
          "how": st.sampled_from(["truncate", "overwrite", "append"])}
"""Hypothesis arguments of ``damaged``."""


def damaged(data: bytes, cut: int, noise: bytes, how: str) -> bytes:
    """A value truncated, overwritten somewhere in its body, or padded: what a reader that
    skips the contract decode must refuse exactly as the contract decode does."""
    at = codec.HEADER_LEN + cut % (len(data) - codec.HEADER_LEN)
    return {
        "truncate": data[:at],
        "overwrite": data[:at] + noise + data[at + len(noise):],
        "append": data + noise,
    }[how]
