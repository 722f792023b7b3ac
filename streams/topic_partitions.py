"""Partitions of topics, asked of the broker (a fresh consumer's metadata may not know them)."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from callrec.streams.errors import StreamsUnavailable


async def topic_partitions(bootstrap: str, topics: tuple[str, ...]) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    found: list[TopicPartition] = []
    for topic in described:
        if topic["error_code"] != 0:
            raise StreamsUnavailable(f"topic {topic['topic']} unavailable "
                                     f"(error code {topic['error_code']})")
        found += [TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]]
    return sorted(found)
