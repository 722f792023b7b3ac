import pytest
from hypothesis import given
from hypothesis import strategies as st

from callrec.producers.errors import BadSipInput
from callrec.producers.sip_framing import split_stream


def message(body: bytes, compact: bool = False) -> bytes:
    length = b"l" if compact else b"Content-Length"
    return b"OPTIONS sip:a SIP/2.0\r\nCall-ID: x\r\n" + length + b": %d\r\n\r\n" % len(body) + body


def test_messages_keepalives_and_a_partial_tail() -> None:
    stream = b"\r\n\r\n" + message(b"") + message(b"v=0\r\n", compact=True) + message(b"abc")[:-2]
    messages, rest = split_stream(stream)
    assert messages == [message(b""), message(b"v=0\r\n", compact=True)]
    assert rest == message(b"abc")[:-2]


@pytest.mark.parametrize(
    "stream",
    [b"OPTIONS sip:a SIP/2.0\r\nCall-ID: x\r\n\r\n", b"X" * 70000, message(b"a" * 70000)],
)
def test_unframeable_streams_are_refused(stream: bytes) -> None:
    with pytest.raises(BadSipInput):
        split_stream(stream)


@given(bodies=st.lists(st.binary(max_size=300), max_size=5), cuts=st.lists(st.integers(1, 50)))
def test_any_split_of_the_stream_gives_the_same_messages(
    bodies: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(message(b) for b in bodies)
    got: list[bytes] = []
    rest, pos = b"", 0
    for size in [*cuts, len(stream)]:
        messages, rest = split_stream(rest + stream[pos : pos + size])
        got += messages
        pos += size
    assert got == [message(b) for b in bodies] and rest == b""
