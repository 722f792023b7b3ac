"""Batching one leg's RTP packets into ~200 ms chunks, counting loss, reordering and duplicates.

The chunker is the recorder's hot path (tens of thousands of packets a second), so it is a small
mutable accumulator per leg rather than a fold over frozen values; it still does no I/O: the
caller passes every arrival time and clock reading in. A chunk is closed by the first packet
that arrives 200 ms or more after the chunk's first packet, or by a clock tick when the stream
stops, so a chunk never holds more than ~200 ms of arrivals and silence produces no chunks.

A chunk is also closed early, before the packet that would take its encoded size past
``max_bytes``: a flood of large datagrams on a leg's port must still make chunks Kafka takes
(``MAX_RECORD_BYTES``), or the outbox could only quarantine them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from callrec.producers.rtp import RtpPacket
from callrec.producers.sdp import Codec

CHUNK_US = 200_000
CHUNK_MAX_BYTES = 512 * 1024
"""Default cap of a chunk's encoded size; G.711 fills ~2 KB in 200 ms."""
PACKET_OVERHEAD_BYTES = 32
"""Upper bound of what a packet adds to an AudioChunk besides its payload (the Avro varints of
seq, timestamp, SSRC, payload type, marker, arrival time and payload length)."""
CHUNK_OVERHEAD_BYTES = 1024
"""Upper bound of a chunk's fields other than its packets (ids, call key, codec, counters)."""
_SEEN_SLOTS = 1024  # duplicates are detected within the last 1024 sequence numbers (~20 s)


class ClosedChunk(NamedTuple):
    """A chunk ready to publish: chunk_seq runs 0, 1, 2, ... per leg with no gap.

    A named tuple (immutable, built fast): five close per leg per second."""

    chunk_seq: int
    codec: Codec
    packets: tuple[RtpPacket, ...]
    packets_lost: int
    packets_reordered: int
    packets_duplicated: int
    ssrc_changes: int
    closed_at_us: int


@dataclass(frozen=True, slots=True)
class LegTotals:
    packets_received: int
    packets_lost: int
    payload_bytes: int
    chunk_count: int


class LegChunker:
    """Accumulates a leg's packets in arrival order; returns each chunk as it closes."""

    def __init__(
        self, codec: Codec, chunk_us: int = CHUNK_US, max_bytes: int = CHUNK_MAX_BYTES
    ) -> None:
        self.codec = codec
        self.chunk_us = chunk_us
        self.max_bytes = max_bytes
        self._bytes = CHUNK_OVERHEAD_BYTES
        self.chunks_cut_by_size = 0
        self.next_chunk_seq = 0
        self._packets: list[RtpPacket] = []
        self._window_end_us = 0
        self._lost = self._reordered = self._duplicated = self._ssrc_changes = 0
        self._ssrc: int | None = None
        self._highest: int | None = None
        self._seen = [-1] * _SEEN_SLOTS
        self.packets_received = 0
        self.packets_lost = 0
        self.payload_bytes = 0

    def add(self, packet: RtpPacket) -> ClosedChunk | None:
        """Take one packet; returns the previous chunk if this packet starts a new one."""
        seq = packet.seq
        new_ssrc = packet.ssrc != self._ssrc
        highest = None if new_ssrc else self._highest
        lost = reordered = 0
        if highest is not None:
            delta = (seq - highest) & 0xFFFF
            if delta == 0 or (delta >= 0x8000 and self._seen[seq % _SEEN_SLOTS] == seq):
                # A duplicate starts no chunk: it is counted in the open one and dropped.
                self._duplicated += 1
                return None
            if delta < 0x8000:
                lost = delta - 1
                highest = seq
            else:
                reordered = 1
        else:
            highest = seq
        closed = None
        arrival_us = packet.arrival_time_us
        size = len(packet.payload)
        cost = size + PACKET_OVERHEAD_BYTES
        if self._packets:
            if arrival_us >= self._window_end_us:
                closed = self._close(arrival_us)
            elif self._bytes + cost > self.max_bytes:
                self.chunks_cut_by_size += 1
                closed = self._close(arrival_us)
        if new_ssrc:
            if self._ssrc is not None:
                self._ssrc_changes += 1
            self._ssrc = packet.ssrc
            self._seen = [-1] * _SEEN_SLOTS
        self._highest = highest
        if lost:
            self._lost += lost
        if reordered:
            self._reordered += 1
        self._seen[seq % _SEEN_SLOTS] = seq
        packets = self._packets
        if not packets:
            self._window_end_us = arrival_us + self.chunk_us
        packets.append(packet)
        self._bytes += cost
        self.packets_received += 1
        self.payload_bytes += size
        return closed

    def tick(self, now_us: int) -> ClosedChunk | None:
        """Close the open chunk once its 200 ms window has passed with no newer packet."""
        if self._packets and now_us >= self._window_end_us:
            return self._close(now_us)
        return None

    def change_codec(self, codec: Codec, now_us: int) -> ClosedChunk | None:
        """A chunk has one codec: close the open one before the new codec's packets arrive."""
        closed = self.flush(now_us)
        self.codec = codec
        return closed

    def flush(self, now_us: int) -> ClosedChunk | None:
        """Close whatever is open (leg ending, codec change)."""
        return self._close(now_us) if self._packets else None

    def totals(self) -> LegTotals:
        return LegTotals(
            self.packets_received, self.packets_lost, self.payload_bytes, self.next_chunk_seq
        )

    def _close(self, now_us: int) -> ClosedChunk:
        chunk = ClosedChunk(
            chunk_seq=self.next_chunk_seq,
            codec=self.codec,
            packets=tuple(self._packets),
            packets_lost=self._lost,
            packets_reordered=self._reordered,
            packets_duplicated=self._duplicated,
            ssrc_changes=self._ssrc_changes,
            closed_at_us=now_us,
        )
        self.next_chunk_seq += 1
        self.packets_lost += self._lost
        self._packets = []
        self._bytes = CHUNK_OVERHEAD_BYTES
        self._lost = self._reordered = self._duplicated = self._ssrc_changes = 0
        return chunk
