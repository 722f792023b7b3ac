"""The event log port: every Kafka client of every process is built here, and Kafka's errors
become the project's here.

Every producer is idempotent with acks=all, so a retried send never duplicates a record and an
acknowledged record survives the loss of the leader, and sends at most ``MAX_RECORD_BYTES``, the
``max.message.bytes`` of every topic. Consumers that cannot use a record publish it to the
dead-letter topic with the reason and go on; every dead letter is bounded
(``deadletters.bounded``: the payload's first 64 KiB, with the whole value's size and SHA-256),
so a bad record of any size makes a small dead letter that Kafka always takes. aiokafka's errors
are translated at this boundary into ``EventLogUnavailable`` (retriable: the broker is down, a
leader is moving, a request timed out) or ``EventLogRefused`` (final: the record or request itself
is refused, e.g. too large), so callers decide on ``retriable`` and never import aiokafka's errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition, errors
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import RecordMetadata

from callrec.avro import codec
from callrec.avro.errors import ContractError
from callrec.avro.events import DeadLetter, Event
from callrec.avro.topics import MAX_RECORD_BYTES, TOPIC_OF
from callrec.deadletters import bounded, dead_letter_for
from callrec.errors import CallrecError, RetriableError

EVENT_TYPE_HEADER = "event-type"
"""Carries the event's Avro full name (``callrec.v1.LegStarted``), as the contract names it."""
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 5,
    "max_request_size": MAX_RECORD_BYTES,
    "request_timeout_ms": 10_000,
}
REFUSED_FOR_GOOD: tuple[type[KafkaError], ...] = (
    errors.MessageSizeTooLargeError, errors.RecordTooLargeError, errors.InvalidTopicError,
    errors.TopicAuthorizationFailedError, errors.CorruptRecordException,
    errors.UnsupportedVersionError, errors.UnsupportedForMessageFormatError,
)
"""Errors that say the record or the request is wrong: sending it again cannot help. Every
other Kafka error (a broker down, a leader moving, a timeout) may pass."""
PRODUCER_SPENT: tuple[type[KafkaError], ...] = (
    errors.OutOfOrderSequenceNumber, errors.DuplicateSequenceNumber, errors.ProducerFenced,
    errors.InvalidProducerEpoch, errors.InvalidProducerIdMapping, errors.ProducerClosed,
)
"""An idempotent producer that got one of these (e.g. its batches timed out during a broker
outage and came back out of sequence) never sends again: only a new producer can. A stopped
producer neither (ProducerClosed: a task still held it when another replaced it)."""


class EventLogError(CallrecError):
    """Kafka failed a request; ``retriable`` says whether the same request may succeed later,
    ``renew_producer`` whether only a new producer can send it."""

    renew_producer = False


class EventLogUnavailable(EventLogError, RetriableError):
    """Kafka could not be reached or did not acknowledge in time."""


class EventLogRefused(EventLogError):
    """Kafka refused the record or request for good (too large, invalid, not authorized)."""


def translated(error: KafkaError, what: str) -> EventLogError:
    """The project's error for an aiokafka error, to ``raise ... from error``."""
    kind = EventLogRefused if isinstance(error, REFUSED_FOR_GOOD) else EventLogUnavailable
    translated_error = kind(f"{what}: {type(error).__name__}: {error}")
    translated_error.renew_producer = isinstance(error, PRODUCER_SPENT)
    return translated_error


@contextlib.contextmanager
def kafka_errors(what: str) -> Iterator[None]:
    """Translate the aiokafka errors raised in the block."""
    try:
        yield
    except KafkaError as e:
        raise translated(e, what) from e


def new_producer(bootstrap: str, client_id: str, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent acks=all producer (not started)."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, client_id=client_id,
                            **{**PRODUCER_DEFAULTS, **overrides})


def new_consumer(bootstrap: str, client_id: str, *topics: str, **options: Any
                 ) -> AIOKafkaConsumer:
    """A consumer (not started) that commits only when told to; outside any group unless
    ``group_id`` is given."""
    options.setdefault("enable_auto_commit", False)
    options.setdefault("group_id", None)
    return AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, client_id=client_id, **options)


def new_admin(bootstrap: str, **options: Any) -> AIOKafkaAdminClient:
    options.setdefault("request_timeout_ms", 10_000)
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)


@contextlib.asynccontextmanager
async def reader(bootstrap: str, client_id: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer outside any group, for reading partitions by hand; stopped after."""
    consumer = new_consumer(bootstrap, client_id)
    try:
        with kafka_errors(f"{client_id}: connect"):
            await consumer.start()
        yield consumer
    finally:
        await consumer.stop()


async def read_to_end(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition],
    until: Mapping[TopicPartition, int] | None = None,
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record of the assigned ``tps`` from their current positions up to ``until`` (by
    default their end offsets as of this call), in order per partition."""
    with kafka_errors("read to the end"):
        ends = dict(until) if until is not None else await consumer.end_offsets(list(tps))
        pending = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield record
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}


async def seek_to_time(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], since_ms: int
) -> dict[TopicPartition, int]:
    """Place each assigned partition at its first record at or after ``since_ms`` (at its end
    when it has none); returns the end offsets, to read up to with ``read_to_end``."""
    with kafka_errors("seek by time"):
        starts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        ends: dict[TopicPartition, int] = await consumer.end_offsets(list(tps))
    for tp in tps:
        start = starts.get(tp)
        consumer.seek(tp, start.offset if start is not None else ends[tp])
    return ends


async def topic_partitions(bootstrap: str, topics: Sequence[str]) -> list[TopicPartition]:
    """Partitions of ``topics``, asked of the broker (a fresh consumer may not know them)."""
    admin = new_admin(bootstrap)
    with kafka_errors(f"describe {', '.join(topics)}"):
        await admin.start()
    try:
        return await _described(admin, topics)
    finally:
        await admin.close()


async def _described(admin: AIOKafkaAdminClient, topics: Sequence[str]) -> list[TopicPartition]:
    with kafka_errors(f"describe {', '.join(topics)}"):
        described = await admin.describe_topics(list(topics))
    found: list[TopicPartition] = []
    for topic in described:
        if topic["error_code"] != 0:
            raise EventLogUnavailable(f"topic {topic['topic']} unavailable "
                                      f"(error code {topic['error_code']})")
        found += [TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]]
    return sorted(found)


class EventPublisher:
    """Publishes contract events; one per process, shared by its tasks."""

    def __init__(self, bootstrap: str, client_id: str, **overrides: Any) -> None:
        self.client_id = client_id
        self._options = (bootstrap, client_id, overrides)
        self._producer = new_producer(bootstrap, client_id, **overrides)
        self._fresh = False
        self._max_request_size = {**PRODUCER_DEFAULTS, **overrides}["max_request_size"]
        self._partition_of: dict[tuple[str, bytes], int] = {}

    async def start(self) -> None:
        try:
            with kafka_errors("cannot reach Kafka"):
                await self._producer.start()
        except EventLogError:
            await self._producer.stop()
            raise

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, event: Event) -> RecordMetadata:
        """Send and wait for the broker's acknowledgement. A producer that can no longer send
        (``renew_producer``) is replaced before the error is raised, so a retry goes through."""
        future = await self.enqueue(event)
        try:
            with kafka_errors(f"{event.avro_name} to {TOPIC_OF[type(event)].name}"):
                return await future
        except EventLogError as e:
            if e.renew_producer:
                await self._renew()
            raise

    async def _renew(self) -> None:
        self._fresh = True  # the next send starts a new producer
        await self._producer.stop()

    async def enqueue(self, event: Event) -> asyncio.Future[RecordMetadata]:
        """Hand the event to the producer's batch; the future resolves on acknowledgement (its
        error is aiokafka's: await it inside ``kafka_errors``). A dead letter is bounded first,
        whoever built it."""
        if isinstance(event, DeadLetter):
            event = bounded(event)
        return await self.enqueue_encoded(
            TOPIC_OF[type(event)].name, event.kafka_key, codec.encode(event), event.avro_name
        )

    async def enqueue_encoded(
        self, topic: str, key: bytes, value: bytes, event_type: str
    ) -> asyncio.Future[RecordMetadata]:
        """Send bytes already encoded (a spool replaying what it stored)."""
        producer = await self._current()
        with kafka_errors(f"send to {topic}"):
            future: asyncio.Future[RecordMetadata] = await producer.send(
                topic, value=value, key=key, headers=[(EVENT_TYPE_HEADER, event_type.encode())]
            )
        return future

    async def enqueue_many(
        self, records: Iterable[tuple[str, bytes, bytes, str]]
    ) -> list[asyncio.Future[RecordMetadata]]:
        """``enqueue_encoded`` for many (topic, key, value, event type) at once, in order: each
        record goes to the partition ``send`` picks for its key, packed with the others into one
        batch per partition as far as they fit, and gets its batch's future; one larger than the
        producer takes gets a failed future. Through ``send`` each record costs aiokafka a
        coroutine, a future and a murmur2 of its key; here an append to a batch."""
        producer = await self._current()
        futures: list[asyncio.Future[RecordMetadata]] = []
        open_batches: dict[tuple[str, int], tuple[BatchBuilder, list[int]]] = {}

        async def send(tp: tuple[str, int], batch: BatchBuilder, members: list[int]) -> None:
            sent = await producer.send_batch(batch, tp[0], partition=tp[1])
            for index in members:
                futures[index] = sent

        with kafka_errors("send a batch"):
            for topic, key, value, event_type in records:
                headers = [(EVENT_TYPE_HEADER, event_type.encode())]
                futures.append(asyncio.get_running_loop().create_future())
                size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
                if size > self._max_request_size:
                    futures[-1].set_exception(errors.MessageSizeTooLargeError(
                        f"{size} bytes, above max_request_size {self._max_request_size}"))
                    continue
                tp = (topic, await self._partition(producer, topic, key))
                batch, members = open_batches.get(tp) or (producer.create_batch(), [])
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    await send(tp, batch, members)  # full: the record starts the next one
                    batch, members = producer.create_batch(), []
                    batch.append(key=key, value=value, timestamp=None, headers=headers)
                members.append(len(futures) - 1)
                open_batches[tp] = (batch, members)
            for tp, (batch, members) in open_batches.items():
                await send(tp, batch, members)
        return futures

    async def _partition(self, producer: AIOKafkaProducer, topic: str, key: bytes) -> int:
        """The partition ``send`` gives ``key`` (the default partitioner), remembered."""
        partition = self._partition_of.get((topic, key))
        if partition is None:
            if len(self._partition_of) > 100_000:
                self._partition_of.clear()
            partitions = sorted(await producer.partitions_for(topic))
            partition = self._partition_of[topic, key] = DefaultPartitioner()(
                key, partitions, partitions)
        return partition

    async def _current(self) -> AIOKafkaProducer:
        """The producer to send with: a new one after ``_renew`` (a stopped one cannot start)."""
        if self._fresh:
            bootstrap, client_id, overrides = self._options
            self._producer = new_producer(bootstrap, client_id, **overrides)
            await self.start()
            self._fresh = False
        return self._producer

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], error: Exception) -> None:
        """Keep a record this process could not use, with why, and go on."""
        await self.publish(dead_letter_for(record, error, self.client_id))


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
    return new_consumer(bootstrap, client_id, **{"request_timeout_ms": 10_000, **overrides})


class LogAdmin:
    """What the broker knows about topics and groups: partitions, and every group's lag.

    Lag per topic is end offset minus committed offset, from what the groups committed (admin
    client) and where the topics end (a group-less consumer), so it sees every group, ours and
    anyone else's, without joining any.
    """

    def __init__(self, bootstrap: str, client_id: str) -> None:
        self._admin = new_admin(bootstrap, client_id=client_id)
        self._ends = log_reader(bootstrap, client_id)

    async def start(self) -> None:
        try:
            with kafka_errors("cannot reach Kafka"):
                await self._admin.start()
                await self._ends.start()
        except EventLogError:
            await self.stop()
            raise

    async def stop(self) -> None:
        await self._ends.stop()
        await self._admin.close()

    async def partitions(self, topics: list[str]) -> list[TopicPartition]:
        """Every partition of the topics, asked of the broker (a fresh consumer may not know)."""
        return await _described(self._admin, topics)

    async def uncommitted(self, group: str, topics: list[str]) -> int:
        """Records of ``topics`` past ``group``'s committed offsets (a partition it never
        committed counts from its start): 0 once the group has committed everything there is."""
        tps = await self.partitions(topics)
        with kafka_errors(f"offsets of group {group}"):
            offsets = await self._admin.list_consumer_group_offsets(group)
            ends = await self._ends.end_offsets(tps)
        done = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
        return sum(max(0, ends[tp] - done.get(tp, 0)) for tp in tps)

    async def lags(self) -> dict[tuple[str, str], int]:
        """(group, topic) -> records behind, for every group with committed offsets."""
        with kafka_errors("reading consumer group offsets"):
            groups = sorted(str(group[0]) for group in await self._admin.list_consumer_groups())
            committed: dict[str, dict[TopicPartition, int]] = {}
            for group in groups:
                offsets = await self._admin.list_consumer_group_offsets(group)
                committed[group] = {tp: meta.offset for tp, meta in offsets.items()
                                    if meta.offset >= 0}
            wanted = {tp for offsets in committed.values() for tp in offsets}
            ends = await self._ends.end_offsets(list(wanted)) if wanted else {}
        lags: dict[tuple[str, str], int] = {}
        for group, offsets in committed.items():
            for tp, offset in offsets.items():
                key = (group, tp.topic)
                lags[key] = lags.get(key, 0) + max(0, ends.get(tp, offset) - offset)
        return lags
