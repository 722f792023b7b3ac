"""Archive one ended call: mix it, store it (retrying while the store is down), announce it.

Every step is safe to repeat: the object key is deterministic and an object already stored for
this call version (or a newer one) is kept, so a worker that died between the upload and the
announcement is replaced by one that finds the object and announces it. A call that reopened
after its recording gets a new version of the same object.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, TypeVar

from callrec.avro.events import CallRecord, DeadLetter, RecordingArchived
from callrec.avro.topics import AUDIO
from callrec.errors import RetriableError
from callrec.eventlog import EventPublisher
from callrec.sinks.calls import Archived
from callrec.sinks.chunk_spool import Spooled
from callrec.sinks.chunk_wire import audio_packets
from callrec.sinks.encode import RecordingFormat, recording_format
from callrec.sinks.manifests import ManifestWriter
from callrec.sinks.naming import archived_event, object_key, object_metadata
from callrec.sinks.packets import ChunkPackets, PayloadFile
from callrec.sinks.recording import MixedRecording, mix_call
from callrec.sinks.settings import MixerSettings
from callrec.sinks.store import RecordingStore, StoredObject

log = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_BACKOFF_S = 0.5
SPILLED_BATCH = 256
"""Spilled chunks read back at a time: enough to spread numpy's cost per call, ~0.5 MB."""


class Archiver:
    def __init__(
        self, settings: MixerSettings, store: RecordingStore, publisher: EventPublisher,
        manifests: ManifestWriter | None = None,
    ) -> None:
        self.settings = settings
        self.manifests = manifests
        self.store = store
        self.publisher = publisher
        self.format = recording_format(settings.mixer_format)
        self.failing_since: str | None = None

    async def archive(
        self,
        call: CallRecord,
        entries: Iterable[Spooled],
        partition: int,
        cpu: asyncio.Semaphore,
        previous: Archived | None = None,
    ) -> RecordingArchived:
        """Mix (holding ``cpu``), store and announce one call; returns the announcement.

        ``entries`` are the call's spooled AudioChunks (offset, Kafka value, packets or None),
        iterated once to mix and again only to dead-letter a chunk that did not decode.
        ``previous``: the recording this one supersedes (the call reopened after it); the new
        one is stored as a new version of the same object, the old version is kept."""
        with self._output() as out:
            async with cpu:
                mixed = await asyncio.to_thread(self._mix, call, entries, out)
            await self._dead_letter_failures(call, entries, mixed, partition)
            key = object_key(call, self.format.extension)
            stored = await self.retrying(
                f"store {key}",
                lambda: asyncio.to_thread(
                    self.store.put, key, out, self.format.content_type,
                    object_metadata(call, mixed), self._retain_until(call),
                ),
            )
        if stored.sha256 != mixed.sha256:
            log.warning("%s already stored with sha256 %s (this mix: %s); keeping the stored one",
                        key, stored.sha256, mixed.sha256)
        event = _announce(call, mixed, stored, self.store.bucket, self.settings.mixer_producer_id)
        if previous is not None:
            event = event.model_copy(update={
                "supersedes_version_id": previous.version_id,
                "supersedes_call_version": previous.call_version,
            })
        await self.retrying(f"announce {key}", lambda: self.publisher.publish(event))
        if self.manifests is not None:  # a late recording of a day already in a manifest
            amend = functools.partial(self.manifests.amend_for, key)
            await self.retrying(f"amend the manifest of {key}", lambda: asyncio.to_thread(amend))
        log.info("archived %s: %s, %d ms, %d gap(s)%s%s", call.call_key, key, mixed.duration_ms,
                 len(mixed.gaps), ", partial" if mixed.partial else "",
                 f", superseding call version {previous.call_version}" if previous else "")
        return event

    def _output(self) -> BinaryIO:
        """The recording's file while it is mixed and uploaded (deleted on close)."""
        directory = self.settings.mixer_spool_dir / "mix"
        directory.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryFile(dir=directory)

    def _mix(self, call: CallRecord, entries: Iterable[Spooled], out: BinaryIO) -> MixedRecording:
        return mix_spooled(call, entries, self.format, self.settings.mixer_channels, out,
                           self.settings.mixer_spool_dir / "mix")

    def _retain_until(self, call: CallRecord) -> datetime | None:
        days = self.settings.mixer_retention_days
        return call.started_at.astimezone(UTC) + timedelta(days=days) if days > 0 else None

    async def _dead_letter_failures(
        self, call: CallRecord, entries: Iterable[Spooled], mixed: MixedRecording, partition: int
    ) -> None:
        if not mixed.failures:
            return
        failed = {(f.leg_id, f.chunk_seq) for f in mixed.failures}
        where = await asyncio.to_thread(_spooled_chunks, entries, failed)
        for failure in mixed.failures:
            offset, value = where[(failure.leg_id, failure.chunk_seq)]
            letter = DeadLetter(
                producer_id=self.settings.mixer_producer_id,
                source_topic=AUDIO.name,
                source_partition=partition,
                source_offset=offset,
                source_key=call.call_key.encode(),
                payload=value,
                error_type="UndecodableAudio",
                reason=f"leg {failure.leg_id} chunk {failure.chunk_seq}: {failure.reason}",
            )
            await self.retrying("dead letter", functools.partial(self.publisher.publish, letter))

    async def retrying(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Retry what failed for a reason that may pass (``retriable``), with capped exponential
        backoff; an error that cannot pass is raised."""
        delay = FIRST_BACKOFF_S
        while True:
            try:
                result = await attempt()
            except RetriableError as e:
                if self.failing_since is None:
                    self.failing_since = datetime.now(UTC).isoformat()
                log.warning("%s failed (%s); retrying in %.1f s", what, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.mixer_upload_backoff_max_s)
                continue
            self.failing_since = None
            return result


def _announce(
    call: CallRecord, mixed: MixedRecording, stored: StoredObject, bucket: str, producer_id: str
) -> RecordingArchived:
    event = archived_event(call, mixed, bucket, stored.key, stored.version_id, producer_id)
    if stored.sha256 and stored.sha256 != mixed.sha256:
        event = event.model_copy(update={"sha256": stored.sha256, "size_bytes": stored.size})
    return event


def mix_spooled(
    call: CallRecord, entries: Iterable[Spooled], fmt: RecordingFormat, channels: int,
    out: BinaryIO, workdir: Path,
) -> MixedRecording:
    """Mix a call from its spool a chunk at a time: chunks held in memory come as their
    packets' summary already; spilled ones are read back from disk in batches, their payloads
    going to a temporary file, so a call of hours costs a few hundred bytes per chunk in memory,
    not its Avro values."""
    with PayloadFile(workdir) as payloads:
        chunks = (c if memory else c._replace(payload=payloads.put(c.payload_bytes()),
                                              store=payloads)
                  for _, _, c, memory in _spooled_packets(entries))
        return mix_call(call, chunks, fmt, channels, out, workdir)


def _spooled_packets(
    entries: Iterable[Spooled],
) -> Iterator[tuple[int, bytes, ChunkPackets, bool]]:
    """Each spooled AudioChunk's offset, value, packets, and whether they came from memory, in
    the spool's order; spilled values are read ``SPILLED_BATCH`` at a time (chunk_wire)."""
    spilled: list[tuple[int, bytes]] = []

    def read_spilled() -> Iterator[tuple[int, bytes, ChunkPackets, bool]]:
        for offset, value, packets in audio_packets(spilled):
            yield offset, value, packets, False
        spilled.clear()

    for offset, value, packets in entries:
        if packets is None:
            spilled.append((offset, value))
            if len(spilled) >= SPILLED_BATCH:
                yield from read_spilled()
            continue
        yield from read_spilled()
        yield offset, value, packets, True
    yield from read_spilled()


def _spooled_chunks(
    entries: Iterable[Spooled], wanted: set[tuple[str, int]]
) -> dict[tuple[str, int], tuple[int, bytes]]:
    """Offset and value of the wanted chunks (the last of duplicates, as the planner keeps)."""
    return {(c.leg_id, c.chunk_seq): (offset, value)
            for offset, value, c, _ in _spooled_packets(entries)
            if (c.leg_id, c.chunk_seq) in wanted}
