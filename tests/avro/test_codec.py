"""Every event model matches its Avro schema and survives the single-object encoding."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callrec.avro import codec
from callrec.avro.errors import UndecodableEvent
from callrec.avro.events import EVENT_TYPES, Event, LegEnded, LegEndReason
from tests.avro.strategies import datum
from tests.avro.writer import SCHEMAS, write_with_schema


@pytest.mark.parametrize("model", EVENT_TYPES, ids=lambda m: m.__name__)
def test_model_has_exactly_the_schema_fields(model: type[Event]) -> None:
    assert list(model.model_fields) == [f["name"] for f in SCHEMAS[model]["fields"]]


@pytest.mark.parametrize("model", EVENT_TYPES, ids=lambda m: m.__name__)
def test_every_field_is_documented(model: type[Event]) -> None:
    def undocumented(schema: Any, path: str) -> list[str]:
        if isinstance(schema, list):
            return [u for branch in schema for u in undocumented(branch, path)]
        if not isinstance(schema, dict) or schema.get("type") not in ("record", "array"):
            return []
        if schema["type"] == "array":
            return undocumented(schema["items"], path)
        missing = [f"{path}.{f['name']}" for f in schema["fields"] if not f.get("doc")]
        return missing + [u for f in schema["fields"] for u in undocumented(f["type"], path)]

    assert undocumented(SCHEMAS[model], model.__name__) == []


@pytest.mark.parametrize("model", EVENT_TYPES, ids=lambda m: m.__name__)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_schema_datum_round_trips_through_the_model(
    model: type[Event], data: st.DataObject
) -> None:
    # given bytes any Avro writer of the schema could produce
    encoded = write_with_schema(SCHEMAS[model], data.draw(datum(SCHEMAS[model])))
    # when decoded into the model and encoded again
    event = codec.decode(encoded)
    # then the model is the right one and the bytes are identical
    assert type(event) is model
    assert codec.encode(event) == encoded


def test_header_is_the_avro_single_object_marker_and_fingerprint() -> None:
    event = LegEnded(
        producer_id="rec-a", call_key="C:1", leg="NEAR_END", leg_id="l1",
        reason=LegEndReason.BYE, packets_received=1, packets_lost=0, payload_bytes=160,
        chunk_count=1,
    )
    encoded = codec.encode(event)
    assert encoded[:2] == b"\xc3\x01"
    assert encoded[2:10] == codec.schema_fingerprint(SCHEMAS[LegEnded])
    assert codec.event_type_name(encoded) == "LegEnded"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "marker"),
        (b"{\"json\": true}", "marker"),
        (b"\xc3\x01" + b"\x00" * 8 + b"body", "unknown schema"),
    ],
)
def test_foreign_bytes_are_undecodable_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(UndecodableEvent, match=why):
        codec.decode(data)


def test_truncated_and_padded_bodies_are_undecodable() -> None:
    event = LegEnded(
        producer_id="rec-a", call_key="C:1", leg="FAR_END", leg_id="l1", reason="BYE",
        packets_received=1, packets_lost=0, payload_bytes=160, chunk_count=1,
    )
    encoded = codec.encode(event)
    with pytest.raises(UndecodableEvent):
        codec.decode(encoded[:-3])
    with pytest.raises(UndecodableEvent, match="trailing"):
        codec.decode(encoded + b"\x00")
