"""The event log port: publish contract events to Kafka and read them back.

Every producer is idempotent with acks=all, so a retried send never duplicates a record and an
acknowledged record survives the loss of the leader. Consumers that cannot use a record publish
it whole to the dead-letter topic with the reason and go on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import RecordMetadata, TopicPartition

from callrec.avro import codec
from callrec.avro.errors import ContractError
from callrec.avro.events import DeadLetter, Event
from callrec.avro.topics import TOPIC_OF
from callrec.errors import RetriableError

EVENT_TYPE_HEADER = "event-type"


class EventLogUnavailable(RetriableError):
    """Kafka could not be reached or did not acknowledge in time."""


class EventPublisher:
    """Publishes contract events; one per process, shared by its tasks."""

    def __init__(self, bootstrap: str, client_id: str, **overrides: Any) -> None:
        options: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 5,
            "max_request_size": 2 * 1024 * 1024,
            "request_timeout_ms": 10_000,
        }
        options.update(overrides)
        self.client_id = client_id
        self._producer = AIOKafkaProducer(**options)

    async def start(self) -> None:
        try:
            await self._producer.start()
        except KafkaError as e:
            await self._producer.stop()
            raise EventLogUnavailable(f"cannot reach Kafka: {e}") from e

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, event: Event) -> RecordMetadata:
        """Send and wait for the broker's acknowledgement."""
        return await (await self.enqueue(event))

    async def enqueue(self, event: Event) -> asyncio.Future[RecordMetadata]:
        """Hand the event to the producer's batch; the future resolves on acknowledgement."""
        return await self.enqueue_encoded(
            TOPIC_OF[type(event)].name, event.kafka_key, codec.encode(event), type(event).__name__
        )

    async def enqueue_encoded(
        self, topic: str, key: bytes, value: bytes, event_type: str
    ) -> asyncio.Future[RecordMetadata]:
        """Send bytes already encoded (a spool replaying what it stored)."""
        try:
            future: asyncio.Future[RecordMetadata] = await self._producer.send(
                topic, value=value, key=key, headers=[(EVENT_TYPE_HEADER, event_type.encode())]
            )
        except (KafkaConnectionError, KafkaError) as e:
            raise EventLogUnavailable(f"send to {topic} failed: {e}") from e
        return future

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], error: Exception) -> None:
        """Keep a record this process could not use, with why, and go on."""
        await self.publish(dead_letter_for(record, error, self.client_id))


class SourceRecord(Protocol):
    """What a dead letter keeps of the record it rejects (any Kafka client's record has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


def dead_letter_for(record: SourceRecord, error: Exception, consumer_id: str) -> DeadLetter:
    return DeadLetter(
        producer_id=consumer_id,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        source_key=record.key,
        payload=record.value or b"",
        error_type=type(error).__name__,
        reason=str(error),
    )


async def read_events(
    consumer: AIOKafkaConsumer, publisher: EventPublisher
) -> AsyncIterator[tuple[ConsumerRecord[bytes, bytes], Event]]:
    """Decoded events of a started consumer; undecodable records go to the dead-letter topic."""
    async for record in consumer:
        try:
            event = codec.decode(record.value or b"")
        except ContractError as e:
            await publisher.dead_letter(record, e)
            continue
        yield record, event



def log_reader(bootstrap: str, client_id: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer in no group: it reads partitions it assigns itself and commits nothing (a
    process that rebuilds its view from the log on every start, e.g. the metrics exporter)."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap, "client_id": client_id, "group_id": None,
        "enable_auto_commit": False, "request_timeout_ms": 10_000,
    }
    options.update(overrides)
    return AIOKafkaConsumer(**options)


class LogAdmin:
    """What the broker knows about topics and groups: partitions, and every group's lag.

    Lag per topic is end offset minus committed offset, from what the groups committed (admin
    client) and where the topics end (a group-less consumer), so it sees every group, ours and
    anyone else's, without joining any.
    """

    def __init__(self, bootstrap: str, client_id: str) -> None:
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, client_id=client_id, request_timeout_ms=10_000)
        self._ends = log_reader(bootstrap, client_id)

    async def start(self) -> None:
        try:
            await self._admin.start()
            await self._ends.start()
        except KafkaError as e:
            await self.stop()
            raise EventLogUnavailable(f"cannot reach Kafka: {e}") from e

    async def stop(self) -> None:
        await self._ends.stop()
        await self._admin.close()

    async def partitions(self, topics: list[str]) -> list[TopicPartition]:
        """Every partition of the topics, asked of the broker (a fresh consumer may not know)."""
        try:
            described = await self._admin.describe_topics(topics)
        except KafkaError as e:
            raise EventLogUnavailable(f"describing {topics} failed: {e}") from e
        found: list[TopicPartition] = []
        for topic in described:
            if topic["error_code"] != 0:
                raise EventLogUnavailable(
                    f"topic {topic['topic']} unavailable (error code {topic['error_code']})")
            found += [TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]]
        return sorted(found)

    async def lags(self) -> dict[tuple[str, str], int]:
        """(group, topic) -> records behind, for every group with committed offsets."""
        try:
            groups = sorted(str(group[0]) for group in await self._admin.list_consumer_groups())
            committed: dict[str, dict[TopicPartition, int]] = {}
            for group in groups:
                offsets = await self._admin.list_consumer_group_offsets(group)
                committed[group] = {tp: meta.offset for tp, meta in offsets.items()
                                    if meta.offset >= 0}
            wanted = {tp for offsets in committed.values() for tp in offsets}
            ends = await self._ends.end_offsets(list(wanted)) if wanted else {}
        except KafkaError as e:
            raise EventLogUnavailable(f"reading consumer group offsets failed: {e}") from e
        lags: dict[tuple[str, str], int] = {}
        for group, offsets in committed.items():
            for tp, offset in offsets.items():
                key = (group, tp.topic)
                lags[key] = lags.get(key, 0) + max(0, ends.get(tp, offset) - offset)
        return lags
