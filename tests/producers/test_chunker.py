from hypothesis import given
from hypothesis import strategies as st

from callrec.producers.chunker import ClosedChunk, LegChunker
from callrec.producers.rtp import RtpPacket
from callrec.producers.sdp import PCMA, PCMU


def pkt(seq: int, at_ms: int, ssrc: int = 1, pt: int = 8) -> RtpPacket:
    return RtpPacket(
        seq & 0xFFFF, seq * 160, ssrc, pt, False, at_ms * 1000, bytes([seq % 256]) * 160
    )


def feed(chunker: LegChunker, packets: list[RtpPacket], end_us: int) -> list[ClosedChunk]:
    chunks = [c for p in packets if (c := chunker.add(p)) is not None]
    last = chunker.flush(end_us)
    return chunks + ([last] if last else [])


def test_20ms_packets_make_200ms_chunks() -> None:
    chunker = LegChunker(PCMA)
    chunks = feed(chunker, [pkt(i, i * 20) for i in range(50)], 10**9)
    assert [len(c.packets) for c in chunks] == [10] * 5
    assert [c.chunk_seq for c in chunks] == [0, 1, 2, 3, 4]
    assert chunker.totals().chunk_count == 5 and chunker.totals().payload_bytes == 50 * 160


def test_loss_reorder_duplicate_and_ssrc_change() -> None:
    chunker = LegChunker(PCMA)
    arrivals = [pkt(1, 0), pkt(2, 1), pkt(5, 2), pkt(4, 3), pkt(4, 4), pkt(5, 5), pkt(9, 6, ssrc=2)]
    [chunk] = feed(chunker, arrivals, 10)
    assert [p.seq for p in chunk.packets] == [1, 2, 5, 4, 9]
    assert (chunk.packets_lost, chunk.packets_reordered, chunk.packets_duplicated) == (2, 1, 2)
    assert chunk.ssrc_changes == 1


def test_sequence_wrap_is_not_loss() -> None:
    [chunk] = feed(LegChunker(PCMU), [pkt(65534, 0), pkt(65535, 1), pkt(65536, 2)], 10)
    assert chunk.packets_lost == 0 and chunk.packets_reordered == 0


def test_dtmf_and_comfort_noise_are_kept_as_such() -> None:
    [chunk] = feed(LegChunker(PCMA), [pkt(1, 0), pkt(2, 1, pt=101), pkt(3, 2, pt=13)], 10)
    assert [p.payload_type for p in chunk.packets] == [8, 101, 13]


def test_tick_closes_a_quiet_chunk_and_codec_change_splits() -> None:
    chunker = LegChunker(PCMA)
    chunker.add(pkt(1, 0))
    assert chunker.tick(100_000) is None
    closed = chunker.tick(200_000)
    assert closed is not None and closed.chunk_seq == 0
    chunker.add(pkt(2, 300))
    split = chunker.change_codec(PCMU, 310_000)
    assert split is not None and split.codec == PCMA and split.chunk_seq == 1
    chunker.add(pkt(3, 320))
    last = chunker.flush(330_000)
    assert last is not None and last.codec == PCMU and last.chunk_seq == 2


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 30)), max_size=200))
def test_nothing_is_lost_and_chunks_are_contiguous(moves: list[tuple[int, int]]) -> None:
    chunker = LegChunker(PCMA)
    packets = [pkt(seq, i * gap_ms) for i, (seq, gap_ms) in enumerate(moves)]
    packets.sort(key=lambda p: p.arrival_time_us)
    chunks = feed(chunker, packets, 10**12)
    assert [c.chunk_seq for c in chunks] == list(range(len(chunks)))
    kept = sum(len(c.packets) for c in chunks)
    assert kept + sum(c.packets_duplicated for c in chunks) == len(packets)
    assert len({p.seq for c in chunks for p in c.packets}) == kept
    for c in chunks:
        assert c.packets[-1].arrival_time_us - c.packets[0].arrival_time_us < 200_000
