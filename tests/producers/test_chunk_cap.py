"""A chunk's encoded size is capped: a flood of large datagrams on a leg's port makes several
chunks Kafka takes, never one it refuses, and no packet is lost on the way."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from callrec.avro import codec
from callrec.avro.events import AudioChunk
from callrec.producers.chunk_encoding import encode_chunk
from callrec.producers.chunker import LegChunker
from callrec.producers.leg import RecorderIdentity, open_leg
from callrec.producers.metadata import call_metadata
from callrec.producers.rtp import RtpPacket
from callrec.producers.sdp import PCMA
from callrec.producers.settings import RecorderSettings
from callrec.producers.sip_facts import DialogOpened

FROM = "<sip:1@h;x-farend;x-refci=77;x-nearendclusterid=CL>;tag=1"
LEG = open_leg(
    DialogOpened("rec-9:abc", call_metadata(FROM, "d"), "abc", "1", "2", None, "7878",
                 "127.0.0.1:5060", 20000, None, None, 0),
    RecorderIdentity("rec-9", "inc"),
)  # fmt: skip
UDP_MAX = 65507


def flood(sizes: list[int], at_us: int = 10**15) -> list[RtpPacket]:
    """Datagrams all within one 200 ms window, the worst case for a time-only chunker."""
    return [RtpPacket(n, n * 160, 7, 8, False, at_us + n, bytes([n % 256]) * size)
            for n, size in enumerate(sizes)]


@given(sizes=st.lists(st.integers(0, UDP_MAX), min_size=1, max_size=40),
       max_bytes=st.integers(128 * 1024, 512 * 1024))
def test_every_chunk_of_a_flood_encodes_within_the_cap_and_keeps_every_packet(
    sizes: list[int], max_bytes: int
) -> None:
    chunker = LegChunker(PCMA, max_bytes=max_bytes)
    packets = flood(sizes)
    chunks = [c for p in packets if (c := chunker.add(p)) is not None]
    last = chunker.flush(10**15 + 1_000_000)
    chunks += [last] if last else []
    assert [p for c in chunks for p in c.packets] == packets
    assert [c.chunk_seq for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        encoded = encode_chunk(LEG, chunk)
        assert len(encoded) <= max_bytes
        assert isinstance(codec.decode(encoded), AudioChunk)
    assert chunker.chunks_cut_by_size == len(chunks) - 1


def test_ordinary_audio_is_not_cut_by_size() -> None:
    chunker = LegChunker(PCMA, max_bytes=128 * 1024)
    packets = [RtpPacket(n, n * 160, 7, 8, False, n * 20_000, bytes(160)) for n in range(50)]
    chunks = [c for p in packets if (c := chunker.add(p)) is not None]
    assert [len(c.packets) for c in chunks] == [10] * 4 and chunker.chunks_cut_by_size == 0


def test_the_cap_is_a_setting_below_kafkas_limit() -> None:
    assert RecorderSettings().chunk_max_bytes == 512 * 1024
    assert RecorderSettings(chunk_max_bytes=1024 * 1024).chunk_max_bytes == 1024 * 1024
    for refused in (64 * 1024, 2 * 1024 * 1024):
        try:
            RecorderSettings(chunk_max_bytes=refused)
        except ValueError:
            continue
        raise AssertionError(f"chunk_max_bytes={refused} was accepted")
