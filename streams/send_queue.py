"""What the worker sends, held until Kafka has acknowledged all of it.

Folded offsets are committed only after the outbox is flushed: a kill -9 then loses
no changelog write of a committed record (the new owner re-folds whatever was not committed,
and folding is idempotent). A send that failed for a reason that may pass (broker gone past the
producer's own retries) is reported and the whole outbox is sent again, in order, so the last
write of a key stays last. A send Kafka refuses for good (``EventLogRefused``: too large,
invalid) is never sent again: it is dead-lettered (bounded, with its size and SHA-256), counted
in ``refused`` and logged, and the rest is sent on as above, in its order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata

from callrec.avro import codec
from callrec.avro.events import CallRecord, DeadLetter, Event, MetricSample
from callrec.avro.topics import CALLS, DEADLETTER, METRICS
from callrec.deadletters import UnsentRecord, bounded, dead_letter_for
from callrec.eventlog import EVENT_TYPE_HEADER, EventLogError, EventLogRefused, translated

log = logging.getLogger(__name__)
SNAPSHOT_HEADERS = ((EVENT_TYPE_HEADER, CallRecord.avro_name.encode()),)


class Outgoing(NamedTuple):
    """One send (a NamedTuple: the worker makes thousands per commit)."""

    topic: str
    partition: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def outgoing_event(topic: str, event: Event, partition: int | None = None) -> Outgoing:
    return Outgoing(topic, partition, event.kafka_key, codec.encode(event),
                    ((EVENT_TYPE_HEADER, event.avro_name.encode()),))


class SendQueue:
    """The processor's Emitter: collects sends; ``flush`` delivers them."""

    def __init__(
        self, changelog_topic: str, retry_s: float = 2.0, producer_id: str = "callrec-streams"
    ) -> None:
        self.changelog_topic = changelog_topic
        self.retry_s = retry_s
        self.producer_id = producer_id
        self.refused = 0
        """Sends Kafka refused for good (each dead-lettered, or logged if itself a dead letter)."""
        self.pending: list[Outgoing] = []
        self.changelog_ends: dict[int, int] = {}
        """Changelog partition -> the offset after this worker's last acknowledged write."""

    def snapshot(self, partition: int, key: bytes, value: bytes) -> None:
        self.pending.append(Outgoing(CALLS.name, partition, key, value, SNAPSHOT_HEADERS))

    def dead_letter(self, letter: DeadLetter) -> None:
        self.pending.append(outgoing_event(DEADLETTER.name, bounded(letter)))

    def metric(self, sample: MetricSample) -> None:
        self.pending.append(outgoing_event(METRICS.name, sample))

    def changelog(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.pending.append(Outgoing(self.changelog_topic, partition, key, value))

    async def flush(
        self, producer: Callable[[], AIOKafkaProducer],
        renew: Callable[[AIOKafkaProducer], Awaitable[object]] | None = None,
    ) -> None:
        """Send everything pending and wait for every acknowledgement. Each attempt takes the
        worker's producer of the moment (another task may have replaced it meanwhile: retrying
        on the one it stopped would fail forever); one that can no longer send
        (``renew_producer``) is handed to ``renew`` before sending again."""
        batch, self.pending = self.pending, []
        while batch:
            used = producer()
            kept: list[Outgoing] = []
            letters: list[Outgoing] = []
            failed: EventLogError | None = None
            for sent, result in zip(batch, await deliver(used, batch), strict=True):
                if isinstance(result, EventLogRefused):
                    letters += self._refused(sent, result)
                    continue
                kept.append(sent)
                if isinstance(result, EventLogError):
                    failed = failed or result
                elif sent.topic == self.changelog_topic:
                    end = self.changelog_ends.get(result.partition, 0)
                    self.changelog_ends[result.partition] = max(end, result.offset + 1)
            if failed is None:
                batch = letters
                continue
            log.warning("a send failed (%s); sending %d again in %.0f s",
                        failed, len(kept), self.retry_s)
            await asyncio.sleep(self.retry_s)
            if failed.renew_producer and renew is not None:
                await renew(used)
            batch = kept + letters

    def _refused(self, sent: Outgoing, error: EventLogRefused) -> list[Outgoing]:
        """The dead letter of a send Kafka will never take; none for a refused dead letter."""
        self.refused += 1
        size = len(sent.value or b"")
        log.error("Kafka refused a %d-byte send to %s for good (%s); dead-lettering it",
                  size, sent.topic, error)
        if sent.topic == DEADLETTER.name:
            return []
        unsent = UnsentRecord(sent.topic, sent.key, sent.value,
                              -1 if sent.partition is None else sent.partition)
        return [outgoing_event(DEADLETTER.name, dead_letter_for(unsent, error, self.producer_id))]


async def deliver(
    producer: AIOKafkaProducer, batch: list[Outgoing]
) -> list[RecordMetadata | EventLogError]:
    """Send the batch in order and wait for every acknowledgement: each send's metadata, or the
    error it failed with (translated)."""
    # Errors are translated where they are caught, not by a ``kafka_errors`` block around each
    # send: the worker sends thousands per commit, and each block cost a generator.
    pending: list[asyncio.Future[RecordMetadata] | EventLogError] = []
    for o in batch:
        try:
            pending.append(await producer.send(o.topic, o.value, key=o.key,
                                               partition=o.partition, headers=list(o.headers)))
        except KafkaError as e:
            pending.append(_failed(e, o))
    results: list[RecordMetadata | EventLogError] = []
    for sent, ack in zip(batch, pending, strict=True):
        if isinstance(ack, EventLogError):
            results.append(ack)
            continue
        try:
            results.append(await ack)
        except KafkaError as e:
            results.append(_failed(e, sent))
    return results


def _failed(error: KafkaError, sent: Outgoing) -> EventLogError:
    failure = translated(error, f"send to {sent.topic}")
    failure.__cause__ = error
    return failure
