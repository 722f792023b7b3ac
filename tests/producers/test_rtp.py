import pytest
from hypothesis import given
from hypothesis import strategies as st

from callrec.producers.errors import BadRtp
from callrec.producers.rtp import build_rtp, parse_rtp


@given(
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    pt=st.integers(0, 127).filter(lambda p: not 72 <= p <= 76),
    marker=st.booleans(),
    payload=st.binary(max_size=400),
)
def test_round_trip(seq: int, ts: int, ssrc: int, pt: int, marker: bool, payload: bytes) -> None:
    packet = parse_rtp(build_rtp(seq, ts, ssrc, pt, payload, marker), 42)
    assert (packet.seq, packet.timestamp, packet.ssrc) == (seq, ts, ssrc)
    assert (packet.payload_type, packet.marker, packet.payload) == (pt, marker, payload)
    assert packet.arrival_time_us == 42


def test_csrcs_extension_and_padding_are_stripped() -> None:
    header = bytes([0x80 | 0x20 | 0x10 | 2, 8]) + (7).to_bytes(2, "big") + bytes(8)
    csrcs = bytes(8)
    extension = b"\xbe\xde\x00\x01" + bytes(4)
    packet = parse_rtp(header + csrcs + extension + b"audio" + b"\x00\x00\x03", 0)
    assert packet.payload == b"audio"
    assert packet.seq == 7


@pytest.mark.parametrize(
    "datagram",
    [b"", b"\x80" * 11, b"\x40" + bytes(11), bytes([0x8F, 0]) + bytes(10), b"\x80\xc8" + bytes(10)],
)
def test_not_rtp(datagram: bytes) -> None:
    with pytest.raises(BadRtp):
        parse_rtp(datagram, 0)


@given(st.binary(max_size=100))
def test_any_datagram_is_a_packet_or_bad_rtp(datagram: bytes) -> None:
    try:
        packet = parse_rtp(datagram, 0)
    except BadRtp:
        return
    assert len(packet.payload) <= len(datagram) - 12
