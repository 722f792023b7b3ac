"""The mixer's chunk reader (chunk_wire) gives what the contract decode and ``compact`` give.

For any AudioChunk an Avro writer can produce, read in a batch with others of any layout, the
packets' summary is the one ``compact(codec.decode(value))`` makes, field for field (span or
rows, arrivals, anchor, joined payloads); chunks as the recorder writes them are read by the
table (not left to the contract decode); damaged bytes end as the contract decode ends them: the
same summary or the same refusal. Pure, no servers (~10 s).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from callrec.avro import codec
from callrec.avro.errors import ContractError
from callrec.avro.events import AudioChunk, CallStatus
from callrec.sinks.chunk_wire import MEMORY, WireChunk, read_chunks, take_in
from callrec.sinks.packets import compact
from tests.avro.strategies import datum
from tests.avro.writer import DAMAGE, SCHEMAS, write_with_schema
from tests.avro.writer import damaged as damage
from tests.sinks.factory import simple_call

CHUNK = SCHEMAS[AudioChunk]
PACKET = next(f for f in CHUNK["fields"] if f["name"] == "packets")["type"]["items"]
# (codec, payload type, clock rate, payload bytes, RTP ticks of a packet)
CODECS = [("PCMU", 0, 8000, 160, 160), ("PCMA", 8, 8000, 160, 160), ("G722", 9, 8000, 160, 160),
          ("G729", 18, 8000, 20, 160), ("PCMU", 0, 8000, 80, 80), ("iLBC", 97, 8000, 38, 160)]


@st.composite
def recorded_chunks(draw: st.DrawFn) -> dict[str, Any]:
    """Chunks as a recorder writes them: packets of one source following each other (any
    sequence number, timestamp and SSRC, wrapping), with now and then one thing out of line:
    a lost, duplicated or swapped packet, another source, a telephone-event, a marker."""
    record: dict[str, Any] = draw(datum(CHUNK))
    name, pt, clock, size, ticks = draw(st.sampled_from(CODECS))
    count = draw(st.integers(1, 12))
    seq = draw(st.integers(0, 65535))
    ts = draw(st.integers(0, 2**32 - 1))
    ssrc = draw(st.integers(0, 2**32 - 1))
    arrival = draw(st.integers(0, 2**53))
    packets = [{"rtp_seq": (seq + i) % 65536, "rtp_timestamp": (ts + i * ticks) % 2**32,
                "ssrc": ssrc, "payload_type": pt, "marker": False,
                "arrival_time_us": arrival + i * 20_000 + draw(st.integers(-5_000, 50_000)),
                "payload": draw(st.binary(min_size=size, max_size=size))}
               for i in range(count)]
    odd = draw(st.integers(0, count - 1))
    change = draw(st.sampled_from(["none", "none", "lost", "twice", "swap", "ssrc", "event",
                                   "marker", "seq", "ts"]))
    if change == "lost" and count > 2:
        del packets[odd]
    elif change == "twice":
        packets.insert(odd, packets[odd])
    elif change == "swap" and odd + 1 < count:
        packets[odd], packets[odd + 1] = packets[odd + 1], packets[odd]
    elif change == "ssrc":
        packets[odd] = {**packets[odd], "ssrc": draw(st.integers(0, 2**32 - 1))}
    elif change == "event":
        packets[odd] = {**packets[odd], "payload_type": 101, "payload": bytes(4)}
    elif change == "marker":
        packets[odd] = {**packets[odd], "marker": True}
    elif change == "seq":
        packets[odd] = {**packets[odd], "rtp_seq": draw(st.integers(-(2**31), 2**31 - 1))}
    elif change == "ts":
        packets[odd] = {**packets[odd], "rtp_timestamp": draw(st.integers(-(2**63), 2**63 - 1))}
    return {**record, "codec": name, "payload_type": pt, "clock_rate": clock,
            "chunk_seq": draw(st.integers(0, 2**40)), "packets": packets}


def outcome(value: bytes, read: WireChunk | None) -> tuple[str, Any]:
    try:
        taken = take_in(value, read)
    except ContractError as e:
        return "refused", type(e)
    assert isinstance(taken, WireChunk)
    return "chunk", (taken.call_key, taken.packets)


def contract(value: bytes) -> tuple[str, Any]:
    try:
        event = codec.decode(value)
    except ContractError as e:
        return "refused", type(e)
    assert isinstance(event, AudioChunk)
    return "chunk", (event.call_key, compact(event, MEMORY))


@settings(max_examples=300, deadline=None)
@given(records=st.lists(st.one_of(recorded_chunks(), datum(CHUNK)), min_size=1, max_size=6))
def test_any_chunks_read_as_a_batch_are_the_contract_decodes_summaries(
    records: list[dict[str, Any]],
) -> None:
    # given AudioChunks as any Avro writer writes them, of any layouts, in one batch
    values = [write_with_schema(CHUNK, r) for r in records]
    # when they are read as the worker reads a fetch
    reads = read_chunks(values)
    # then each is the contract decode's chunk, summarised by compact, field for field
    for value, read in zip(values, reads, strict=True):
        assert outcome(value, read) == contract(value)


@settings(max_examples=200, deadline=None)
@given(record=recorded_chunks())
def test_recorded_chunks_of_rtp_values_are_read_by_the_table(record: dict[str, Any]) -> None:
    # given a chunk as the recorder writes it, each packet laid out as the first one (the same
    # varint widths and payload size), and its values in RTP's ranges
    value = write_with_schema(CHUNK, record)
    packets = record["packets"]
    one_layout = len({_layout(p) for p in packets}) == 1
    rtp = all(0 <= p["rtp_seq"] < 2**16 and 0 <= p["rtp_timestamp"] < 2**32 for p in packets)
    # when it is read
    [read] = read_chunks([value])
    # then it was read without the contract decode exactly when it could be
    assert (read is not None) == (one_layout and rtp)


def test_a_recorded_call_is_read_span_by_span() -> None:
    # given a 3 s call as the tests' recorder writes it (contiguous packets, both legs)
    near, far, record = simple_call("A:1", packets=150)
    assert record.status == CallStatus.COMPLETED
    values = [codec.encode(c) for c in near + far]
    # when its chunks are read in one batch
    reads = read_chunks(values)
    # then every chunk is a span, the summary compact makes of the decoded chunk, but where a
    # varint grows a byte inside the chunk (the timestamp passing 8192: chunk 4 of each leg)
    left = []
    for chunk, read in zip(near + far, reads, strict=True):
        if read is None:
            left.append(chunk.chunk_seq)
            assert len({_layout(p.model_dump()) for p in chunk.packets}) > 1
            continue
        assert read.packets.span is not None
        assert read.packets == compact(chunk, MEMORY)
    assert left == [4, 4]


@settings(max_examples=50, deadline=None)
@given(record=recorded_chunks(), arrival=st.sampled_from([-(2**63), -(2**62), 2**62, 2**63 - 1]))
def test_arrivals_at_the_ends_of_a_long_are_read_as_the_contract_reads_them(
    record: dict[str, Any], arrival: int,
) -> None:
    # given a chunk whose packets arrived at the ends of what a long holds (the anchor of a span
    # is an arrival minus the packets before it, computed in int64: it must not wrap; the
    # table reads varints of up to 9 bytes, so such values stay under 2^62)
    packets = [{**p, "arrival_time_us": arrival} for p in record["packets"]]
    value = write_with_schema(CHUNK, {**record, "packets": packets})
    # when it is read, then it is what the contract decode and compact make of it
    [read] = read_chunks([value])
    assert outcome(value, read) == contract(value)


@settings(max_examples=300, deadline=None)
@given(record=recorded_chunks(), **DAMAGE)
def test_damaged_chunks_end_as_the_contract_decode_ends_them(
    record: dict[str, Any], cut: int, noise: bytes, how: str,
) -> None:
    # given a chunk's bytes, truncated, overwritten somewhere in its body, or padded
    data = write_with_schema(CHUNK, record)
    damaged = damage(data, cut, noise, how)
    # then the worker keeps what the contract decode gives, or refuses it as it does
    [read] = read_chunks([damaged, data])[:1]
    assert outcome(damaged, read) == contract(damaged)


def _layout(packet: dict[str, Any]) -> tuple[int, ...]:
    """A packet's varints' widths and its payload's size."""
    fields = ("rtp_seq", "rtp_timestamp", "ssrc", "payload_type", "arrival_time_us")
    return (*(_width(packet[f]) for f in fields), len(packet["payload"]))


def _width(value: int) -> int:
    """Bytes of a long as an Avro varint (zigzag, 7 bits a byte)."""
    return max(1, (((value << 1) ^ (value >> 63)).bit_length() + 6) // 7)
