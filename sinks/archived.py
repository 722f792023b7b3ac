"""Which calls are already archived: read back from rec.recordings.v1 when partitions arrive.

The recordings topic is the mixer's tracking record: a call announced there is done up to the
CallRecord version it was mixed from, so a worker that re-reads audio from an old committed offset
skips it instead of mixing it again, and mixes it again only for a newer version of the call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from aiokafka import TopicPartition

from callrec.avro import codec
from callrec.avro.errors import ContractError
from callrec.avro.events import RecordingArchived
from callrec.avro.topics import RECORDINGS
from callrec.eventlog import read_to_end, reader, seek_to_time, topic_partitions
from callrec.sinks.calls import Archived
from callrec.sinks.naming import day_prefix


async def load_archived(
    bootstrap: str, partitions: Sequence[int], lookback: timedelta
) -> dict[int, dict[str, Archived]]:
    """The newest recording of each call announced in the partitions over ``lookback``."""
    async with reader(bootstrap, "callrec-mixer-archived") as consumer:
        tps = [TopicPartition(RECORDINGS.name, p) for p in partitions]
        consumer.assign(tps)
        since_ms = int((time.time() - lookback.total_seconds()) * 1000)
        ends = await seek_to_time(consumer, tps, since_ms)
        done: dict[int, dict[str, Archived]] = {p: {} for p in partitions}
        async for record in read_to_end(consumer, tps, ends):
            try:
                event = codec.decode(record.value or b"")
            except ContractError:
                continue  # not ours to judge: the topic's consumers dead-letter it
            if isinstance(event, RecordingArchived):
                calls = done[record.partition]
                known = calls.get(event.call_key)
                if known is None or event.call_version >= known.call_version:
                    calls[event.call_key] = Archived(event.call_version, event.version_id)
        return done


async def announced_on(bootstrap: str, bucket: str, day: date) -> list[RecordingArchived]:
    """Every RecordingArchived of ``bucket`` whose object is of ``day`` (what `verify` holds the
    store and the manifest against), read from the day's start to the topic's end."""
    tps = await topic_partitions(bootstrap, [RECORDINGS.name])
    since_ms = int(datetime.combine(day, datetime.min.time(), UTC).timestamp() * 1000)
    prefix = day_prefix(day)
    found: list[RecordingArchived] = []
    async with reader(bootstrap, "callrec-mixer-verify") as consumer:
        consumer.assign(tps)
        ends = await seek_to_time(consumer, tps, since_ms)
        async for record in read_to_end(consumer, tps, ends):
            try:
                event = codec.decode(record.value or b"")
            except ContractError:
                continue
            if (isinstance(event, RecordingArchived) and event.bucket == bucket
                    and event.object_key.startswith(prefix)):
                found.append(event)
    return found
