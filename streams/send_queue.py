"""What the worker sends, held until Kafka has acknowledged all of it.

Folded offsets are committed only after the outbox is flushed: a kill -9 then loses
no changelog write of a committed record (the new owner re-folds whatever was not committed,
and folding is idempotent). A send Kafka refuses (broker gone past the producer's own retries)
is reported and the whole outbox is sent again, in order, so the last write of a key stays last.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from callrec.avro import codec
from callrec.avro.events import CallRecord, DeadLetter, Event, MetricSample
from callrec.avro.topics import CALLS, DEADLETTER, METRICS
from callrec.eventlog import EVENT_TYPE_HEADER, EventLogError, kafka_errors

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
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

    def __init__(self, changelog_topic: str, retry_s: float = 2.0) -> None:
        self.changelog_topic = changelog_topic
        self.retry_s = retry_s
        self.pending: list[Outgoing] = []
        self.changelog_ends: dict[int, int] = {}
        """Changelog partition -> the offset after this worker's last acknowledged write."""

    def snapshot(self, partition: int, record: CallRecord) -> None:
        self.pending.append(outgoing_event(CALLS.name, record, partition))

    def dead_letter(self, letter: DeadLetter) -> None:
        self.pending.append(outgoing_event(DEADLETTER.name, letter))

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
        if not batch:
            return
        while True:
            used = producer()
            try:
                written = await deliver(used, batch)
                break
            except EventLogError as e:
                log.warning("Kafka refused %d sends (%s); sending them again in %.0f s",
                            len(batch), e, self.retry_s)
                await asyncio.sleep(self.retry_s)
                if e.renew_producer and renew is not None:
                    await renew(used)
        for sent, where in zip(batch, written, strict=True):
            if sent.topic == self.changelog_topic:
                end = self.changelog_ends.get(where.partition, 0)
                self.changelog_ends[where.partition] = max(end, where.offset + 1)


async def deliver(producer: AIOKafkaProducer, batch: list[Outgoing]) -> list[RecordMetadata]:
    with kafka_errors(f"{len(batch)} sends"):
        acks = [await producer.send(o.topic, o.value, key=o.key, partition=o.partition,
                                    headers=list(o.headers)) for o in batch]
        return list(await asyncio.gather(*acks))
