"""What a dead letter keeps of a record a process cannot use or Kafka refused: where it came
from, why, and a bounded copy of it.

A dead letter must itself fit on the dead-letter topic, or the process that writes it would retry
it forever: it keeps the value's first 64 KiB with the whole value's size and SHA-256 (enough to
match it against the recorder's quarantine file), the key's first 4 KiB and the reason's first
4096 characters.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from callrec.avro.events import DeadLetter

DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024
"""A dead letter keeps this much of the rejected value (and of its key, ``_KEY_BYTES``)."""
_KEY_BYTES = 4096
_REASON_CHARS = 4096


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


@dataclass(frozen=True, slots=True)
class UnsentRecord:
    """A record Kafka refused to store: it has no partition or offset (-1 in its dead letter)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int = -1
    offset: int = -1


def dead_letter_for(record: SourceRecord, error: Exception, consumer_id: str) -> DeadLetter:
    """The (bounded) dead letter of a record this process cannot use or Kafka refused."""
    return bounded(DeadLetter(
        producer_id=consumer_id,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        source_key=record.key,
        payload=record.value or b"",
        error_type=type(error).__name__,
        reason=str(error),
    ))


def bounded(letter: DeadLetter) -> DeadLetter:
    """The letter with at most 64 KiB of payload, 4 KiB of key and 4096 characters of reason,
    and the whole payload's size and SHA-256: a dead letter of a 2 MiB record must itself fit on
    the dead-letter topic, or the process that writes it would retry it forever. A letter that
    already has its hash is returned as it is."""
    if letter.payload_sha256 is not None:
        return letter
    payload = letter.payload
    key = letter.source_key
    return letter.model_copy(update={
        "payload": payload[:DEAD_LETTER_PAYLOAD_BYTES],
        "payload_size": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "source_key": None if key is None else key[:_KEY_BYTES],
        "reason": letter.reason[:_REASON_CHARS],
    })
