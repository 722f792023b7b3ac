"""The local spool of open calls' audio: memory first, then files, both with a budget.

It is a cache, not a store: Kafka keeps every chunk until the mixer commits past it, so losing
the spool (a crash, a new worker) only means re-reading. Chunks are kept as the Kafka values they
came in (Avro bytes) with their offsets, so an undecodable one can be dead-lettered whole; in
memory the chunk's packets' summary (packets.ChunkPackets, its payloads joined) stays beside its
bytes, so mixing does not read it a second time.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from callrec.sinks.errors import ChunkSpoolFull
from callrec.sinks.packets import ChunkPackets

log = logging.getLogger(__name__)
RECORD_HEADER = struct.Struct(">qI")  # offset, value length
Spooled = tuple[int, bytes, ChunkPackets | None]


@dataclass
class _CallSpool:
    memory: list[Spooled] = field(default_factory=list)
    memory_bytes: int = 0
    file: Path | None = None
    file_bytes: int = 0


class ChunkSpool:
    """Per-call lists of (offset, value); the biggest calls spill to disk past the memory budget."""

    def __init__(self, directory: Path, memory_budget: int, disk_budget: int) -> None:
        self.directory = directory
        self.memory_budget = memory_budget
        self.disk_budget = disk_budget
        self.memory_bytes = 0
        self.disk_bytes = 0
        self._calls: dict[str, _CallSpool] = {}
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.spool"):  # a previous run's cache: Kafka has it all
            stale.unlink()

    def add(self, call_key: str, offset: int, value: bytes, chunk: ChunkPackets | None) -> None:
        call = self._calls.setdefault(call_key, _CallSpool())
        call.memory.append((offset, value, chunk))
        call.memory_bytes += len(value)
        self.memory_bytes += len(value)
        try:
            while self.memory_bytes > self.memory_budget:
                self._spill()
        except ChunkSpoolFull:  # leave the spool as it was: the caller will offer the value again
            if call.memory and call.memory[-1][:2] == (offset, value):
                call.memory.pop()
                call.memory_bytes -= len(value)
                self.memory_bytes -= len(value)
            raise

    def stream(self, call_key: str) -> SpooledCall:
        """The call's (offset, value, chunk) in arrival order, chunk None once spilled; read from
        disk one record at a time each time it is iterated (the call's spool as it is now:
        later additions are not in it)."""
        call = self._calls.get(call_key)
        if call is None:
            return SpooledCall(None, 0, [])
        return SpooledCall(call.file, call.file_bytes, list(call.memory))

    def discard(self, call_key: str) -> None:
        call = self._calls.pop(call_key, None)
        if call is None:
            return
        self.memory_bytes -= call.memory_bytes
        self.disk_bytes -= call.file_bytes
        if call.file is not None:
            call.file.unlink(missing_ok=True)

    def _spill(self) -> None:
        key, call = max(self._calls.items(), key=lambda kv: kv[1].memory_bytes)
        size = call.memory_bytes + RECORD_HEADER.size * len(call.memory)
        if self.disk_bytes + size > self.disk_budget:
            raise ChunkSpoolFull(
                f"spool over budget: {self.memory_bytes} B in memory, {self.disk_bytes} B on disk"
            )
        if call.file is None:
            call.file = self.directory / f"{quote(key, safe='')}.spool"
        try:
            with call.file.open("ab") as f:
                f.truncate(call.file_bytes)  # a spill the disk refused half-way left a torn tail
                for offset, value, _ in call.memory:
                    f.write(RECORD_HEADER.pack(offset, len(value)))
                    f.write(value)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise ChunkSpoolFull(f"cannot write the spool file {call.file}: {e}") from e
        self.disk_bytes += size
        call.file_bytes += size
        self.memory_bytes -= call.memory_bytes
        call.memory, call.memory_bytes = [], 0
        log.debug("spilled %s (%d B) to %s", key, size, call.file)


@dataclass(frozen=True)
class SpooledCall:
    """A call's spooled chunks, re-readable: a long call's values are never all in memory."""

    file: Path | None
    file_bytes: int
    memory: list[Spooled]

    def __iter__(self) -> Iterator[Spooled]:
        if self.file is not None:
            with self.file.open("rb") as f:
                pos = 0
                while pos < self.file_bytes:  # only what was written whole
                    offset, length = RECORD_HEADER.unpack(f.read(RECORD_HEADER.size))
                    yield offset, f.read(length), None
                    pos += RECORD_HEADER.size + length
        yield from self.memory
