"""Read a call's audio back from Kafka after the mixer's offsets moved past it.

A call that reopens after its first recording (a hold longer than the segment window, late
audio) needs the chunks of its earlier segments again; the CallRecord says where its first chunk
is. Only records keyed by the call are decoded, so scanning the partition is cheap. Audio older
than the topic's retention is gone: the new version then lacks it (the superseded version keeps
it), and the caller is told how much it missed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from callrec.avro import codec
from callrec.avro.errors import ContractError
from callrec.avro.events import AudioChunk
from callrec.avro.topics import AUDIO
from callrec.eventlog import EventLogUnavailable
from callrec.sinks.spool import Spooled

log = logging.getLogger(__name__)


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
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                client_id="callrec-mixer-reread")
    try:
        await consumer.start()
        consumer.assign([tp])
        start = (await consumer.beginning_offsets([tp]))[tp]
        expired = max(0, start - first_offset)
        consumer.seek(tp, max(first_offset, start))
        found: list[Spooled] = []
        while await consumer.position(tp) < until:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
            for record in batch.get(tp, []):
                if record.offset >= until or record.key != key:
                    continue
                try:
                    chunk = codec.decode(record.value or b"")
                except ContractError:
                    continue  # dead-lettered when the worker first read it
                if isinstance(chunk, AudioChunk):
                    found.append((record.offset, record.value or b"", chunk))
        return Reread(found, expired)
    except KafkaError as e:
        raise EventLogUnavailable(f"re-reading {tp.topic}/{partition} for {call_key}: {e}") from e
    finally:
        await consumer.stop()
