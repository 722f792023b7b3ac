"""Read a call's audio back from Kafka after the mixer's offsets moved past it.

A call that reopens after its first recording (a hold longer than the segment window, late
audio) needs the chunks of its earlier segments again; the CallRecord says where its first chunk
is. Only records keyed by the call are read, so scanning the partition is cheap. Audio older
than the topic's retention is gone: the new version then lacks it (the superseded version keeps
it), and the caller is told how much it missed.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition

from callrec.avro.topics import AUDIO
from callrec.eventlog import kafka_errors, read_to_end, reader
from callrec.sinks.chunk_spool import Spooled
from callrec.sinks.chunk_wire import audio_packets


@dataclass(frozen=True)
class Reread:
    chunks: list[Spooled]
    expired: int
    """Offsets between the first chunk and the start of the retained log: audio Kafka no longer
    has."""


async def reread_audio(
    bootstrap: str, partition: int, first_offset: int, until: int, call_key: str
) -> Reread:
    """Every AudioChunk of ``call_key`` in [first_offset, until) of the audio partition."""
    tp = TopicPartition(AUDIO.name, partition)
    key = call_key.encode()
    async with reader(bootstrap, "callrec-mixer-reread") as consumer:
        consumer.assign([tp])
        with kafka_errors(f"seek {AUDIO.name}/{partition}"):
            start = (await consumer.beginning_offsets([tp]))[tp]
        consumer.seek(tp, max(first_offset, start))
        mine: list[tuple[int, bytes]] = []
        async for record in read_to_end(consumer, [tp], {tp: until}):
            if record.key == key:
                mine.append((record.offset, record.value or b""))
        found: list[Spooled] = list(audio_packets(mine))
        return Reread(found, max(0, start - first_offset))
