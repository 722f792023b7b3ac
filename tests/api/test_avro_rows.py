"""The ingest hot path (api/avro_rows.py) builds exactly the rows of the model path.

For any CallRecord or RecordingArchived an Avro writer of the current schema can produce, the
row read straight from the bytes equals ``rows.call_row``/``rows.recording_row`` of the decoded
model, byte for byte; damaged bytes, other event types, old writer schemas and times it is not
sure of are left to the contract decode, so a replica applies or skips each record exactly as
before.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callrec.api import avro_rows
from callrec.api.readmodel import Batch
from callrec.api.rows import call_row, micros, recording_row
from callrec.avro import codec
from callrec.avro.errors import ContractError
from callrec.avro.events import CallRecord, CallStatus, RecordingArchived
from tests.api.harness import call_record
from tests.avro.strategies import datum
from tests.avro.writer import SCHEMAS, write_with_schema

CALL, RECORDING = SCHEMAS[CallRecord], SCHEMAS[RecordingArchived]
OLD_CALL = codec.load_schema(codec.HISTORY_DIR / "CallRecord.1.avsc")
BOTH = st.one_of(datum(CALL), datum(RECORDING)).map(
    lambda r: write_with_schema(CALL if "legs" in r else RECORDING, r))


def model_path(data: bytes) -> tuple[str, Any]:
    """What the replica did before the hot path: the contract decode, then rows.py."""
    try:
        event = codec.decode(data)
    except ContractError as e:
        return "refused", type(e)
    if isinstance(event, CallRecord):
        return "calls", call_row(event)
    if isinstance(event, RecordingArchived):
        return "recordings", recording_row(event)
    return "other", type(event)


def ingested(data: bytes) -> tuple[str, Any]:
    """What the replica does now with the same bytes (``Batch.add``)."""
    batch = Batch()
    if not batch.add("t", 0, 0, data):
        return "refused", None
    if batch.calls:
        return "calls", next(iter(batch.calls.values()))
    if batch.recordings:
        return "recordings", batch.recordings[0]
    return "other", None


@settings(max_examples=300, deadline=None)
@given(data=BOTH)
def test_any_record_gives_the_model_paths_row_without_the_model(data: bytes) -> None:
    # given a CallRecord or RecordingArchived as any writer of the current schema writes it
    # when the hot path reads it
    fast = avro_rows.decode_row(data)
    # then it did (times 1970-2200 are never left to the contract decode), into the same row
    assert fast is not None
    kind, row = model_path(data)
    assert fast.row == row
    assert ingested(data) == (kind, row)


@settings(max_examples=300, deadline=None)
@given(data=BOTH, cut=st.integers(0, 600), noise=st.binary(min_size=1, max_size=3),
       how=st.sampled_from(["truncate", "overwrite", "append"]))
def test_damaged_records_are_applied_or_skipped_as_before(
    data: bytes, cut: int, noise: bytes, how: str,
) -> None:
    # given a record's bytes, truncated, overwritten somewhere in its body, or padded
    at = codec.HEADER_LEN + cut % (len(data) - codec.HEADER_LEN)
    damaged = {"truncate": data[:at], "overwrite": data[:at] + noise + data[at + len(noise):],
               "append": data + noise}[how]
    # then the replica applies the model path's row, or skips what the model path refuses
    expected = model_path(damaged)
    assert ingested(damaged) == (expected if expected[0] != "refused" else ("refused", None))


def _plain(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """Bytes of the current schema written from raw longs (times a model could not hold)."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(avro_rows._plain(schema),
                                                          named_schemas={}), record)
    return codec.MARKER + codec.schema_fingerprint(schema) + out.getvalue()


def _raw(value: Any) -> Any:
    """A model dump as the plain schema writes it: times as microseconds, UUIDs as text."""
    if isinstance(value, dict):
        return {k: _raw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_raw(v) for v in value]
    if isinstance(value, datetime):
        return micros(value)
    return str(value) if isinstance(value, uuid.UUID) else value


def _call(**changes: Any) -> dict[str, Any]:
    call = call_record("C:1", near="1001", far="5550001", status=CallStatus.COMPLETED,
                       started=datetime(2026, 11, 1, tzinfo=UTC))
    raw: dict[str, Any] = _raw(call.model_dump())
    return {**raw, **changes}


@pytest.mark.parametrize(("changes", "applied"), [
    ({}, True),
    ({"ended_at": 0}, True),  # the epoch is a time, not "no time"
    ({"event_time": -1}, True),
    ({"event_time": 253_402_300_799_999_999}, True),  # 9999-12-31: left to the model path
    ({"event_time": 253_402_300_800_000_000}, False),  # past datetime: refused by both
    ({"started_at": -(2**63)}, False),
    ({"event_id": "0B6B9BD4-0F4E-4A43-9D6E-0F9A0C1E2D3F"}, True),  # a UUID, not canonical
    ({"event_id": "not-a-uuid"}, False),
])
def test_edge_records_are_applied_or_skipped_as_before(
    changes: dict[str, Any], applied: bool,
) -> None:
    data = _plain(CALL, _call(**changes))
    expected = model_path(data)
    assert (expected[0] == "calls") is applied
    assert ingested(data) == (expected if applied else ("refused", None))


def test_a_leg_time_past_datetime_is_refused_as_before() -> None:
    record = _call()
    record["legs"][1]["last_audio_at"] = 2**62
    data = _plain(CALL, record)
    assert model_path(data)[0] == "refused"
    assert ingested(data) == ("refused", None)


@settings(max_examples=20, deadline=None)
@given(record=datum(OLD_CALL))
def test_old_writer_schemas_take_the_contract_decode(record: dict[str, Any]) -> None:
    data = write_with_schema(OLD_CALL, record)
    assert avro_rows.decode_row(data) is None
    assert model_path(data)[0] == "calls"
    assert ingested(data) == model_path(data)


@pytest.mark.parametrize("junk", [b"", b"\xc3\x01" + b"\x00" * 8, b"not avro at all"])
def test_bytes_of_no_known_schema_are_skipped(junk: bytes) -> None:
    assert avro_rows.decode_row(junk) is None
    assert ingested(junk) == ("refused", None)


def test_a_bad_record_is_skipped_and_the_ones_around_it_applied() -> None:
    good = codec.encode(call_record("C:1", near="1", far="2",
                                    started=datetime(2026, 11, 1, tzinfo=UTC),
                                    status=CallStatus.ACTIVE))
    batch = Batch()
    outcomes = [batch.add("rec.calls.v1", 0, n, value)
                for n, value in enumerate([good, good[:-3], None, b"junk", good])]
    assert outcomes == [True, False, False, False, True]
    assert list(batch.calls) == ["C:1"] and batch.offsets == {("rec.calls.v1", 0): 5}
