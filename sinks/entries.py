"""A leg's chunks -> its planning entries, in arrival order (timeline.py places them).

An entry is one RTP packet with its sequence number and timestamp unwrapped, or a span of
contiguous ones (packets.Span): a chunk the recorder sent as ten packets back to back is one, and
so are the spans of consecutive chunks that follow each other exactly, as they would join one run
and one slot packet by packet, so a call's plan is a few entries, not one per packet or chunk.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from callrec.sinks.codecs import AudioCodec, codec_named
from callrec.sinks.packets import RTP_SEQ_MODULUS, RTP_TS_MODULUS, ChunkPackets, Span
from callrec.sinks.placed import ChunkAudio


@dataclass(slots=True)
class Packet:
    """One RTP packet, or ``count`` contiguous ones (a span, or spans of ``chunks`` chunks): the
    first packet's sequence, timestamp and arrival, the last one's, and the span's anchor."""

    chunk_seq: int
    ssrc: int
    ext_seq: int
    ext_ts: int
    arrival_us: int
    audio: bool
    codec: AudioCodec | None
    codec_name: str
    clock_rate: int
    count: int = 1
    last_ts: int = 0
    last_arrival_us: int = 0
    anchor_us: int = 0
    """min of arrival - (ts - ext_ts) over the packets, in microseconds."""
    offset: int = 0
    """Where the packet's payload starts in its chunk's payload bytes."""
    size: int = 0
    """Payload bytes (of the whole span)."""
    first_sample: int = 0
    samples: int = 0
    chunks: int = 1
    """Chunks planned as this one entry: spans that follow each other exactly (extend)."""

    @property
    def last_seq(self) -> int:
        return self.ext_seq + self.count - 1


def unwrap(previous: int | None, value: int, modulus: int) -> int:
    """Extend a wrapping counter (RTP timestamp or sequence) to the value nearest the last."""
    if previous is None:
        return value
    delta = (value - previous) % modulus
    if delta >= modulus // 2:
        delta -= modulus
    return previous + delta


def extend(chunks: Sequence[ChunkPackets], spans: bool) -> list[Packet]:
    """The chunks' packets in arrival order, sequence and timestamp unwrapped; a span is one
    entry, and so are spans of consecutive chunks that follow each other exactly (the next
    packet's sequence and timestamp, the same source, codec and packet), as they would join
    one run and one slot packet by packet: a call's plan is a few entries, not one per chunk."""
    last_ts: dict[int, int] = {}
    last_seq: dict[int, int] = {}
    out: list[Packet] = []
    spanned: tuple[Packet, Span] | None = None  # the last entry, if spans, and its last span
    for chunk in chunks:
        codec = codec_named(chunk.codec)
        span = chunk.span
        if spans and span is not None and codec is not None:
            ext_ts = unwrap(last_ts.get(span.ssrc), span.ts, RTP_TS_MODULUS)
            ext_seq = unwrap(last_seq.get(span.ssrc), span.seq, RTP_SEQ_MODULUS)
            end_ts = ext_ts + (span.count - 1) * span.ticks
            last_ts[span.ssrc], last_seq[span.ssrc] = end_ts, ext_seq + span.count - 1
            if spanned is not None and _continues(spanned, chunk, span, ext_seq, ext_ts):
                _merge(spanned[0], span, ext_ts, end_ts)
                spanned = spanned[0], span
                continue
            out.append(Packet(chunk.chunk_seq, span.ssrc, ext_seq, ext_ts, span.first_us, True,
                               codec, chunk.codec, chunk.clock_rate, span.count, end_ts,
                               span.last_us, span.anchor_us, 0, span.size * span.count))
            spanned = out[-1], span
            continue
        spanned = None
        offset = 0
        for p in chunk.packet_rows():
            ext_ts = unwrap(last_ts.get(p.ssrc), p.ts, RTP_TS_MODULUS)
            ext_seq = unwrap(last_seq.get(p.ssrc), p.seq, RTP_SEQ_MODULUS)
            last_ts[p.ssrc], last_seq[p.ssrc] = ext_ts, ext_seq
            audio = p.payload_type == chunk.payload_type and (
                codec is None or codec.audio_bytes(p.size) > 0
            )
            out.append(Packet(chunk.chunk_seq, p.ssrc, ext_seq, ext_ts, p.arrival_us, audio,
                               codec, chunk.codec, chunk.clock_rate, 1, ext_ts, p.arrival_us,
                               p.arrival_us, offset, p.size))
            offset += p.size
    return out


def _continues(spanned: tuple[Packet, Span], chunk: ChunkPackets, span: Span, ext_seq: int,
               ext_ts: int) -> bool:
    """Whether ``span`` follows the spans of entry ``spanned[0]`` (the last one ``spanned[1]``)
    exactly: what joining them one by one would put in one run and one slot."""
    entry, last = spanned
    return (span.ssrc == entry.ssrc and chunk.codec == entry.codec_name
            and chunk.clock_rate == entry.clock_rate and span.size == last.size
            and span.ticks == last.ticks and ext_seq == entry.last_seq + 1
            and ext_ts == entry.last_ts + span.ticks)


def _merge(entry: Packet, span: Span, ext_ts: int, end_ts: int) -> None:
    """Extend ``entry`` by the span that follows it (its anchor exact: spans exist only for
    clocks dividing 1 s)."""
    spoken_us = (ext_ts - entry.ext_ts) * 1_000_000 // entry.clock_rate
    entry.anchor_us = min(entry.anchor_us, span.anchor_us - spoken_us)
    entry.count += span.count
    entry.last_ts = end_ts
    entry.last_arrival_us = span.last_us
    entry.size += span.size * span.count
    entry.chunks += 1


def chunk_audio(chunks: Sequence[ChunkPackets], packets: list[Packet]) -> Iterable[ChunkAudio]:
    """Each chunk's audio payloads in sequence order, and where each packet's samples fall in
    the leg's decoded audio (``Packet.first_sample``)."""
    by_chunk: dict[int, list[Packet]] = {}
    for p in packets:
        if p.audio:
            by_chunk.setdefault(p.chunk_seq, []).append(p)
    base = 0
    following = iter(chunks)
    for chunk in following:
        members = by_chunk.get(chunk.chunk_seq, [])
        if len(members) == 1 and members[0].chunks > 1:  # spans of chunks: each one whole
            entry = members[0]
            assert entry.codec is not None
            entry.first_sample = base
            for c in itertools.chain((chunk,), itertools.islice(following, entry.chunks - 1)):
                samples = entry.codec.samples(entry.codec.audio_bytes(c.payload_length()))
                yield ChunkAudio(c.chunk_seq, c.codec, entry.codec, c, None, base, samples)
                base += samples
            entry.samples = base - entry.first_sample
            continue
        if len(members) > 1:
            members.sort(key=_by_seq)
        pieces: list[tuple[int, int]] = []
        sample = base
        for p in members:
            size = p.size
            if p.codec is not None:
                size = p.codec.audio_bytes(size)
                p.samples = p.codec.samples(size)
            p.first_sample = sample
            sample += p.samples
            pieces.append((p.offset, p.offset + size))
        if members:
            whole = len(members) == 1 and members[0].count > 1  # a span: its payload as it is
            yield ChunkAudio(chunk.chunk_seq, chunk.codec, members[0].codec, chunk,
                             None if whole else tuple(pieces), base, sample - base)
            base = sample


def _by_seq(p: Packet) -> int:
    return p.ext_seq
