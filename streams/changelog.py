"""The calls table's changelog: a compacted topic, partition p holding the calls of partition p.

A worker that takes partition p reads changelog partition p from its start to the end offset it
had when recovery began. Every write of p's previous owner is there by then: that owner flushed
its outbox before committing, and a dead owner wrote nothing after it died.

A worker that gets back a partition it held keeps its calls in memory only if the changelog's
end is where its own last write left it: otherwise someone else owned the partition meanwhile
(this worker was expelled from the group, say while frozen) and it recovers like a newcomer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, MutableMapping

from aiokafka import TopicPartition

from callrec.avro.topics import MAX_RECORD_BYTES, TopicSpec
from callrec.eventlog import kafka_errors, read_to_end, reader

log = logging.getLogger(__name__)


def changelog_spec(topic: str) -> TopicSpec:
    return TopicSpec(topic, {"cleanup.policy": "compact",
                             "max.message.bytes": str(MAX_RECORD_BYTES)})


async def recover(
    bootstrap: str, topic: str, partitions: Iterable[int], table: MutableMapping[bytes, bytes]
) -> dict[int, int]:
    """Load the table's entries of ``partitions`` (tombstones delete); returns, per partition,
    the end offset read up to."""
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    if not tps:
        return {}
    read = 0
    async with reader(bootstrap, "callrec-streams-recovery") as consumer:
        consumer.assign(tps)
        with kafka_errors(f"recover {topic}"):
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
        async for record in read_to_end(consumer, tps, ends):
            if record.key is None:
                continue
            if record.value is None:
                table.pop(record.key, None)
            else:
                table[record.key] = record.value
            read += 1
    log.info("recovered partitions %s from %s: %d records", [tp.partition for tp in tps],
             topic, read)
    return {tp.partition: ends[tp] for tp in tps}


async def end_offsets(bootstrap: str, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    if not tps:
        return {}
    async with reader(bootstrap, "callrec-streams-recovery") as consumer:
        with kafka_errors(f"end offsets of {topic}"):
            ends = await consumer.end_offsets(tps)
    return {tp.partition: ends[tp] for tp in tps}
