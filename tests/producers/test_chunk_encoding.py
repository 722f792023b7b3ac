import io
from datetime import UTC, datetime, timedelta

import fastavro
from hypothesis import given
from hypothesis import strategies as st

from callrec.avro import codec
from callrec.avro.events import AudioChunk, Leg
from callrec.producers.chunk_encoding import encode_chunk, encode_chunk_as
from callrec.producers.chunker import ClosedChunk
from callrec.producers.leg import LegState, RecorderIdentity, open_leg
from callrec.producers.metadata import call_metadata
from callrec.producers.rtp import RtpPacket
from callrec.producers.sdp import G722
from callrec.producers.sip_facts import DialogOpened

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FROM = "<sip:1@h;x-farend;x-refci=77;x-nearendclusterid=CL>;tag=1"

packets = st.builds(
    RtpPacket,
    seq=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload_type=st.integers(0, 127),
    marker=st.booleans(),
    arrival_time_us=st.integers(0, 2**62),
    payload=st.binary(max_size=320),
)
any_chunk = given(
    chunk_seq=st.integers(0, 2**40),
    packets=st.lists(packets, max_size=12),
    counters=st.tuples(*[st.integers(0, 2**31 - 1)] * 4),
    closed_at_us=st.integers(0, 4 * 10**15),
)


def far_end_leg() -> LegState:
    opened = DialogOpened(
        "rec-9:abc", call_metadata(FROM, "d"), "abc", "1", "2", None, "7878",
        "127.0.0.1:5060", 20000, None, None, 0,
    )  # fmt: skip
    return open_leg(opened, RecorderIdentity("rec-9", "inc"))


@any_chunk
def test_fast_encoding_is_the_contract_encoding(
    chunk_seq: int, packets: list[RtpPacket], counters: tuple[int, ...], closed_at_us: int
) -> None:
    leg, chunk = far_end_leg(), ClosedChunk(chunk_seq, G722, tuple(packets), *counters,
                                           closed_at_us=closed_at_us)  # fmt: skip
    event = codec.decode(encode_chunk(leg, chunk))
    assert isinstance(event, AudioChunk)
    assert (event.call_key, event.leg, event.leg_id) == ("CL:77", Leg.FAR_END, "rec-9:abc")
    assert (event.chunk_seq, event.codec, event.payload_type) == (chunk_seq, "G722", 9)
    assert event.event_time == EPOCH + timedelta(microseconds=closed_at_us)
    assert [
        (p.rtp_seq, p.rtp_timestamp, p.ssrc, p.payload_type, p.marker, p.arrival_time_us, p.payload)
        for p in event.packets
    ] == [
        (p.seq, p.timestamp, p.ssrc, p.payload_type, p.marker, p.arrival_time_us, p.payload)
        for p in packets
    ]
    assert (
        event.packets_lost,
        event.packets_reordered,
        event.packets_duplicated,
        event.ssrc_changes,
    ) == counters
    assert codec.encode(event)[10:] != b""  # the model re-encodes: it satisfies its schema


@any_chunk
def test_hand_encoding_is_fastavros_byte_for_byte(
    chunk_seq: int, packets: list[RtpPacket], counters: tuple[int, ...], closed_at_us: int
) -> None:
    leg, chunk = far_end_leg(), ClosedChunk(chunk_seq, G722, tuple(packets), *counters,
                                           closed_at_us=closed_at_us)  # fmt: skip
    event_id = "0f0e0d0c-0b0a-4908-8706-050403020100"
    record = {
        "event_id": event_id, "event_time": closed_at_us, "producer_id": "rec-9",
        "call_key": "CL:77", "leg": "FAR_END", "leg_id": "rec-9:abc", "chunk_seq": chunk_seq,
        "codec": "G722", "payload_type": 9, "clock_rate": 8000,
        "packets": [
            {"rtp_seq": p.seq, "rtp_timestamp": p.timestamp, "ssrc": p.ssrc,
             "payload_type": p.payload_type, "marker": p.marker,
             "arrival_time_us": p.arrival_time_us, "payload": p.payload}
            for p in packets
        ],
        "packets_lost": counters[0], "packets_reordered": counters[1],
        "packets_duplicated": counters[2], "ssrc_changes": counters[3],
    }  # fmt: skip
    schema = codec.load_schema(codec.SCHEMA_DIR / "AudioChunk.avsc")
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema, named_schemas={}), record)
    assert encode_chunk_as(event_id, leg, chunk) == (
        codec.MARKER + codec.schema_fingerprint(schema) + out.getvalue()
    )
