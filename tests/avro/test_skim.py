"""The skimming decode (codec.decode_skimming) reads exactly what the contract decode reads.

For any AudioChunk an Avro writer can produce it gives every field the contract decode gives,
with the packets counted and their payload bytes summed; any other event, and any bytes it is
not sure of, it leaves to the contract decode (same event, or the same error).
"""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callrec.avro import codec
from callrec.avro.errors import ContractError
from callrec.avro.events import EVENT_TYPES, AudioChunk, Event
from callrec.avro.skim import SkimmedChunk, skim_chunk
from tests.avro.strategies import datum
from tests.avro.writer import DAMAGE, SCHEMAS, write_with_schema
from tests.avro.writer import damaged as damage

CHUNK = SCHEMAS[AudioChunk]
CHUNK_PACKET_SCHEMA = next(f for f in CHUNK["fields"] if f["name"] == "packets")["type"]["items"]


def facts(event: AudioChunk | SkimmedChunk) -> dict[str, Any]:
    """What call state reads of a chunk: every field but the packets, which it sums up."""
    read = {f: getattr(event, f) for f in AudioChunk.model_fields if f != "packets"}
    if isinstance(event, SkimmedChunk):
        return {**read, "packet_count": event.packet_count, "payload_bytes": event.payload_bytes}
    return {**read, "packet_count": len(event.packets),
            "payload_bytes": sum(len(p.payload) for p in event.packets)}


def outcome(decode: Any, data: bytes) -> tuple[str, Any]:
    try:
        event = decode(data)
    except ContractError as e:
        return "refused", type(e)
    if isinstance(event, AudioChunk | SkimmedChunk):
        return "chunk", facts(event)
    return "event", event


@st.composite
def one_size_chunks(draw: st.DrawFn) -> dict[str, Any]:
    """Chunks as a codec writes them: up to 12 packets of one payload size (which the skim
    reads in one match), sometimes with one packet of another size somewhere."""
    record: dict[str, Any] = draw(datum(CHUNK))
    size = draw(st.sampled_from([0, 1, 20, 63, 64, 160, 320, 8191]))
    count = draw(st.integers(1, 12))
    packets = [{**draw(datum(CHUNK_PACKET_SCHEMA)), "payload": draw(st.binary(
        min_size=size, max_size=size))} for _ in range(count)]
    if draw(st.booleans()):
        odd = draw(st.integers(0, count - 1))
        packets[odd] = {**packets[odd], "payload": bytes(draw(st.integers(0, 200)))}
    return {**record, "packets": packets}


@settings(max_examples=300, deadline=None)
@given(record=st.one_of(datum(CHUNK), one_size_chunks()))
def test_any_chunk_is_skimmed_into_the_facts_the_contract_decode_gives(
    record: dict[str, Any],
) -> None:
    # given an AudioChunk as any Avro writer of its schema writes it (or as a codec does: its
    # packets of one size, read in one match)
    data = write_with_schema(CHUNK, record)
    # when it is skimmed
    skimmed = codec.decode_skimming(data)
    # then it was skimmed (not left to the contract decode), into the same facts
    assert isinstance(skimmed, SkimmedChunk)
    full = codec.decode(data)
    assert isinstance(full, AudioChunk)
    assert facts(skimmed) == facts(full)
    assert skimmed.kafka_key == full.kafka_key


@pytest.mark.parametrize("model", [m for m in EVENT_TYPES if m is not AudioChunk],
                         ids=lambda m: m.__name__)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_other_events_are_decoded_by_the_contract(model: type[Event], data: st.DataObject) -> None:
    encoded = write_with_schema(SCHEMAS[model], data.draw(datum(SCHEMAS[model])))
    assert codec.decode_skimming(encoded) == codec.decode(encoded)


@settings(max_examples=400, deadline=None)
@given(record=st.one_of(datum(CHUNK), one_size_chunks()), **DAMAGE)
def test_damaged_chunks_read_as_the_contract_decode_reads_them(
    record: dict[str, Any], cut: int, noise: bytes, how: str,
) -> None:
    # given a chunk's bytes, truncated, overwritten somewhere in its body, or padded
    damaged = damage(write_with_schema(CHUNK, record), cut, noise, how)
    # then skimming gives what the contract decode gives: the same facts or the same refusal
    assert outcome(codec.decode_skimming, damaged) == outcome(codec.decode, damaged)


_RECORD: dict[str, Any] = {
    "event_id": "0b6b9bd4-0f4e-4a43-9d6e-0f9a0c1e2d3f", "event_time": 1_790_000_000_000_000,
    "producer_id": "rec-a", "call_key": "C:1", "leg": "FAR_END", "leg_id": "C:1/F",
    "chunk_seq": 7, "codec": "PCMU", "payload_type": 0, "clock_rate": 8000, "packets": [],
    "packets_lost": 1, "packets_reordered": 0, "packets_duplicated": 0, "ssrc_changes": 0,
}
_PACKET: dict[str, Any] = {
    "rtp_seq": 1, "rtp_timestamp": 160, "ssrc": 7, "payload_type": 0, "marker": False,
    "arrival_time_us": 1_790_000_000_000_000, "payload": bytes(160)}


def test_packets_written_in_sized_blocks_are_counted() -> None:
    # given a chunk whose packet array is written as the Avro spec allows: blocks with a
    # negative count followed by their size in bytes
    record, packet = _RECORD, _PACKET
    plain = write_with_schema(CHUNK, record)
    array_at = plain.index(b"PCMU") + 4 + 1 + 2  # codec, then payload_type 0 and clock_rate 8000
    assert plain[array_at] == 0  # the empty array
    items = b"".join(_write(CHUNK_PACKET, {**packet, "rtp_seq": n}) for n in range(3))
    blocks = (_zigzag(-2) + _zigzag(len(items) * 2 // 3) + items[: len(items) * 2 // 3]
              + _zigzag(1) + items[len(items) * 2 // 3:] + b"\x00")
    sized = plain[:array_at] + blocks + plain[array_at + 1:]
    # when skimmed
    skimmed = codec.decode_skimming(sized)
    # then every packet counts, as the contract decode reads them
    assert isinstance(skimmed, SkimmedChunk)
    assert (skimmed.packet_count, skimmed.payload_bytes) == (3, 480)
    full = codec.decode(sized)
    assert isinstance(full, AudioChunk)
    assert facts(skimmed) == facts(full)


CHUNK_PACKET = fastavro.parse_schema(CHUNK_PACKET_SCHEMA, named_schemas={})


def _write(schema: Any, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def _zigzag(value: int) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, "long", value)
    return out.getvalue()


@pytest.mark.parametrize(("written", "skimmed_too"), [
    (b"\x48" + b"0b6b9bd4-0f4e-4a43-9d6e-0f9a0c1e2d3f", True),  # as the producers write it
    (b"\x48" + b"0B6B9BD4-0F4E-4A43-9D6E-0F9A0C1E2D3F", True),  # upper case: a canonical UUID
    (b"\xc8\x00" + b"0b6b9bd4-0f4e-4a43-9d6e-0f9a0c1e2d3f", True),  # length in two bytes
    (b"\x46" + b"0b6b9bd4-0f4e-4a43-9d6e-0f9a0c1e2d3", False),  # 35 characters
    (b"\x48" + b"0b6b9bd40f4e-4a43-9d6e-0f9a0c1e2d3f-", False),  # not a canonical UUID
    (b"\x48" + b"0b6b9bd4-0f4e-4a43-9d6e-0f9a0c1e2d3\xff", False),  # not UTF-8
    (b"\x49" + b"0b6b9bd4-0f4e-4a43-9d6e-0f9a0c1e2d3f", False),  # a negative length
], ids=["canonical", "upper case", "two-byte length", "short", "dashes moved", "not UTF-8",
        "negative length"])
def test_an_event_id_is_read_as_the_contract_decode_reads_it(
    written: bytes, skimmed_too: bool
) -> None:
    # given a chunk whose event id is written as a producer writes it, or otherwise
    record = {**_RECORD, "packets": [_PACKET]}
    plain = write_with_schema(CHUNK, record)
    at = codec.HEADER_LEN
    assert plain[at:at + 37] == b"\x48" + _RECORD["event_id"].encode()
    data = plain[:at] + written + plain[at + 37:]
    # when it is skimmed, then it reads as the contract decode reads it
    assert outcome(codec.decode_skimming, data) == outcome(codec.decode, data)
    # and the skim read it where it can (the contract decode read or refused the others)
    assert (skim_chunk(data, codec.HEADER_LEN) is not None) == skimmed_too


@st.composite
def one_leg_chunks(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Chunks of a few legs, as a recorder writes them one after another: the same producer,
    call key, leg and leg id in each (read once, then looked up), and legs whose values differ
    from another's in one of them, by a byte or in length, or any other chunk."""
    base: dict[str, Any] = draw(datum(CHUNK))
    whose = st.fixed_dictionaries({
        "producer_id": st.sampled_from([base["producer_id"], "rec-a", "rec-b", "r" * 70, "réc"]),
        "call_key": st.sampled_from([base["call_key"], "C:2", "C:3", "C:" + "9" * 80]),
        "leg": st.sampled_from(["NEAR_END", "FAR_END"]),
        "leg_id": st.sampled_from([base["leg_id"], "C:1/F", "C:1/N", ""]),
    })
    legs = draw(st.lists(whose, min_size=1, max_size=3))
    return [{**draw(st.one_of(datum(CHUNK), one_size_chunks())), **draw(st.sampled_from(legs))}
            for _ in range(draw(st.integers(2, 8)))]


@settings(max_examples=100, deadline=None)
@given(records=one_leg_chunks())
def test_chunks_of_the_same_legs_are_each_skimmed_into_their_own_facts(
    records: list[dict[str, Any]],
) -> None:
    # given chunks of a few legs, read one after another by the same process
    for record in records:
        data = write_with_schema(CHUNK, record)
        # when each is skimmed, then it gives the facts the contract decode gives
        skimmed = codec.decode_skimming(data)
        assert isinstance(skimmed, SkimmedChunk)
        assert facts(skimmed) == facts(codec.decode(data))


@pytest.mark.parametrize(("field", "first", "then"), [
    ("producer_id", "rec-a", "rec-b"), ("call_key", "C:2", "C:3"), ("leg", "NEAR_END", "FAR_END"),
    ("leg_id", "C:1/F", "C:1/N"), ("leg_id", "C:1/F", "C:1/F" + "x" * 70),
])
def test_legs_that_differ_by_a_byte_are_told_apart(field: str, first: str, then: str) -> None:
    # given a chunk of one leg read, then a chunk of a leg that differs from it by one byte
    # (or whose leg id no longer fits a one-byte length)
    for value in (first, then, first):
        data = write_with_schema(CHUNK, {**_RECORD, "packets": [_PACKET], field: value})
        # when skimmed, then it is that leg's chunk
        skimmed = codec.decode_skimming(data)
        assert isinstance(skimmed, SkimmedChunk)
        assert getattr(skimmed, field) == value
        assert facts(skimmed) == facts(codec.decode(data))
