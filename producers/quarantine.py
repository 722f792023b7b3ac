"""Records Kafka refused for good, kept beside the spool so that nothing accepted vanishes.

The spool holds the only copy of what the recorder heard. A record Kafka will never take (too
large, invalid) cannot stay at the spool's head, or it would block every later event, and cannot
be dropped: it is appended here, fsynced, and only then acknowledged out of the spool. The
outbox also sends a bounded dead letter of it (first 64 KiB, size, SHA-256) to rec.deadletter.v1,
so the log says it happened and the SHA-256 finds the whole record here.

Format: ``<data dir>/quarantine/records.jsonl``, one JSON object per line (a line cut short by a
crash is skipped by ``read_quarantined``)::

    {"quarantined_at": "2026-12-02T01:50:00.123456+00:00", "spool_seq": 1234,
     "topic": "rec.audio.v1", "event_type": "callrec.v1.AudioChunk", "key": "<base64>",
     "size": 3145728, "sha256": "<hex of the value>", "error": "EventLogRefused: ...",
     "value": "<base64 of the whole value>"}
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

QUARANTINE_FILE = "records.jsonl"


@dataclass(frozen=True, slots=True)
class Quarantined:
    """One refused record as the quarantine file holds it."""

    quarantined_at: datetime
    spool_seq: int
    topic: str
    event_type: str
    key: bytes
    value: bytes
    size: int
    sha256: str
    error: str


def quarantined(
    spool_seq: int, topic: str, event_type: str, key: bytes, value: bytes, error: str,
    at: datetime,
) -> Quarantined:
    return Quarantined(at, spool_seq, topic, event_type, key, value, len(value),
                       hashlib.sha256(value).hexdigest(), error)


def to_line(record: Quarantined) -> bytes:
    """The record as one line of the quarantine file."""
    return json.dumps({
        "quarantined_at": record.quarantined_at.isoformat(),
        "spool_seq": record.spool_seq,
        "topic": record.topic,
        "event_type": record.event_type,
        "key": base64.b64encode(record.key).decode(),
        "size": record.size,
        "sha256": record.sha256,
        "error": record.error,
        "value": base64.b64encode(record.value).decode(),
    }).encode() + b"\n"


def from_line(line: bytes) -> Quarantined:
    fields = json.loads(line)
    return Quarantined(
        datetime.fromisoformat(fields["quarantined_at"]), fields["spool_seq"], fields["topic"],
        fields["event_type"], base64.b64decode(fields["key"]), base64.b64decode(fields["value"]),
        fields["size"], fields["sha256"], fields["error"],
    )


class Quarantine:
    """The append-only quarantine file of one recorder's data dir."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / QUARANTINE_FILE
        self.count = 0
        """Records quarantined by this process."""

    def keep(self, record: Quarantined) -> None:
        """Append and fsync the record: only then may the spool forget it (OSError if not)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            line = memoryview(to_line(record))
            while line:
                line = line[os.write(fd, line):]
            os.fsync(fd)
        finally:
            os.close(fd)
        self.count += 1


def read_quarantined(path: Path) -> Iterator[Quarantined]:
    """Every complete record of a quarantine file, oldest first."""
    if not path.exists():
        return
    with path.open("rb") as file:
        for line in file:
            try:
                yield from_line(line)
            except (ValueError, KeyError):
                continue
