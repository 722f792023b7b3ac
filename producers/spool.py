"""The recorder's write-ahead spool: every event is on disk before it is handed to Kafka.

Kafka may be away for minutes; CUCM keeps sending audio. Each event is appended to a segment
file under the recorder's data dir, read back in order by the Kafka sender, and forgotten only
when the broker has acknowledged it (``ack``), so a broker outage loses nothing and a recorder
restart replays what was not acknowledged. The spool is bounded: ``append`` refuses with
SpoolFull beyond ``max_bytes``, and the recorder stops taking calls well before that.

The recorder's loop appends and the outbox's thread reads and acknowledges (and appends the
dead letters of what Kafka refused), so every method that touches the segments, the held records
or the counters takes the spool's lock; none holds it for longer than one write, read or fsync.

Records are written with plain ``os.write`` (they survive a process crash through the page
cache) and fsynced every ``sync_interval_s``: a power cut can lose that last fraction of a second.

A disk that refuses a write (ENOSPC, EIO, a short write) never leaves a torn record: the segment
is cut back to its last whole record (or, if even that fails, left for a new one; a restart cuts
the torn tail). From then on records are *held* in memory, up to ``memory_bytes``, in seq order
after those on disk; the sender reads them from there like any other, and an acknowledged one is
forgotten. ``retry_disk`` (called about once a second) writes the unacknowledged ones back to
disk when there is room again, and the spool is back to normal. Held records are lost if the
process dies meanwhile: the price of keeping live calls going on a full disk.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from callrec.producers.errors import SpoolFull

_FRAME = struct.Struct("!IIQQ")  # crc32 of the body, body length, record seq, written at (us)
_BODY = struct.Struct("!BHB")  # topic, key, event-type lengths
SEGMENT_SUFFIX = ".spool"
ACKED_FILE = "acked"
DISK_ROOM_MARGIN = 64 * 1024
"""Free bytes wanted beyond the held records before writing them back (so the retry does not
fill the disk again at once)."""


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    seq: int
    written_us: int
    topic: str
    key: bytes
    event_type: str
    value: bytes
    size: int


@dataclass
class _Segment:
    first_seq: int
    path: Path
    size: int = 0
    last_seq: int = -1


P = ParamSpec("P")
R = TypeVar("R")


def _locked(method: Callable[Concatenate[Spool, P], R]) -> Callable[Concatenate[Spool, P], R]:
    """The method under the spool's lock (the writer and the sender are on two threads)."""

    def locked(self: Spool, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            return method(self, *args, **kwargs)

    locked.__doc__, locked.__name__ = method.__doc__, method.__name__
    return locked


def _encode(
    seq: int, written_us: int, topic: str, key: bytes, event_type: str, value: bytes
) -> bytes:
    t, e = topic.encode(), event_type.encode()
    body = _BODY.pack(len(t), len(key), len(e)) + t + key + e + value
    return _FRAME.pack(zlib.crc32(body), len(body), seq, written_us) + body


def _decode(buf: bytes, pos: int) -> SpooledRecord | None:
    """The record at ``pos``, or None if the bytes there are short or torn (a crash mid-write)."""
    if len(buf) - pos < _FRAME.size:
        return None
    crc, length, seq, written_us = _FRAME.unpack_from(buf, pos)
    start = pos + _FRAME.size
    body = buf[start : start + length]
    if len(body) != length or zlib.crc32(body) != crc or length < _BODY.size:
        return None
    tl, kl, el = _BODY.unpack_from(body)
    o = _BODY.size
    topic = body[o : o + tl].decode()
    key = body[o + tl : o + tl + kl]
    event_type = body[o + tl + kl : o + tl + kl + el].decode()
    value = body[o + tl + kl + el :]
    return SpooledRecord(seq, written_us, topic, key, event_type, value, _FRAME.size + length)


class Spool:
    """Append-only segments plus an acknowledged watermark; one writer, one reader (the sender)."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_bytes: int = 16 * 1024 * 1024,
        sync_interval_s: float = 0.2,
        memory_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._lock = threading.RLock()
        self.directory = directory
        self.max_bytes = max_bytes
        self.memory_bytes = memory_bytes
        self.disk_problem: str | None = None
        """Why the disk refused the last write (``disk full``, ``disk failing``); None when
        records go to disk."""
        self._held: deque[SpooledRecord] = deque()
        self.held_bytes = 0
        self.segment_bytes = segment_bytes
        self.sync_interval_s = sync_interval_s
        directory.mkdir(parents=True, exist_ok=True)
        self.acked_seq = self._read_acked()
        self._segments: deque[_Segment] = deque()
        self._pending_bytes = 0  # bytes of records not yet acknowledged
        self._head_offset = 0  # where the first unacknowledged record starts in the first segment
        self._recover()
        last = self._segments[-1].last_seq if self._segments else self.acked_seq
        self.next_seq = max(last, self.acked_seq) + 1
        self._fd: int | None = None
        self._last_sync = time.monotonic()
        self._read_seg = 0
        self._read_buf = b""
        self._read_base = 0
        self._read_pos = 0
        self._read_next_seq = self.acked_seq + 1
        self._acked_dirty = False

    # -- writer -------------------------------------------------------------------------------

    @_locked
    def append(self, topic: str, key: bytes, event_type: str, value: bytes) -> int:
        """Store one event before anything else happens to it (on disk, or held in memory while
        the disk refuses); returns its seq. SpoolFull when neither has room."""
        seq = self.next_seq
        written_us = time.time_ns() // 1000
        frame = _encode(seq, written_us, topic, key, event_type, value)
        if self._pending_bytes + len(frame) > self.max_bytes:
            raise SpoolFull(f"spool holds {self._pending_bytes} bytes, bound {self.max_bytes}")
        if self.disk_problem is None:
            try:
                self._write(seq, seq, frame)
            except OSError as e:
                self.disk_problem = _problem(e)
        if self.disk_problem is not None:
            if self.held_bytes + len(frame) > self.memory_bytes:
                raise SpoolFull(f"{self.disk_problem} and {self.held_bytes} bytes held in memory")
            record = SpooledRecord(seq, written_us, topic, key, event_type, value, len(frame))
            self._held.append(record)
            self.held_bytes += len(frame)
        self._pending_bytes += len(frame)
        self.next_seq = seq + 1
        return seq

    @_locked
    def retry_disk(self) -> None:
        """Once the disk has room again, write the held records Kafka has not acknowledged back
        to it and take the disk again (``disk_problem`` None)."""
        if self.disk_problem is None:
            return
        try:
            if shutil.disk_usage(self.directory).free < self.held_bytes + DISK_ROOM_MARGIN:
                return
        except OSError:
            return
        if self._held:
            frames = b"".join(
                _encode(r.seq, r.written_us, r.topic, r.key, r.event_type, r.value)
                for r in self._held
            )
            try:
                self._write(self._held[0].seq, self._held[-1].seq, frames, sync=True)
            except OSError as e:
                self.disk_problem = _problem(e)
                return
            self._held.clear()
            self.held_bytes = 0
        self.disk_problem = None

    def _write(self, first_seq: int, last_seq: int, frames: bytes, sync: bool = False) -> None:
        """Append whole records to the open segment, or nothing (OSError: cut back to before)."""
        segment = self._segments[-1] if self._segments else None
        if segment is None or self._fd is None or segment.size >= self.segment_bytes:
            segment = self._open_segment(first_seq)
        fd = self._fd
        assert fd is not None
        try:
            written = os.write(fd, frames)
            if written != len(frames):
                raise OSError(errno.ENOSPC, f"short write: {written} of {len(frames)} bytes")
            now = time.monotonic()
            if sync or now - self._last_sync >= self.sync_interval_s:
                os.fsync(fd)
                self._last_sync = now
        except OSError:
            self._cut_back(segment)
            raise
        segment.size += len(frames)
        segment.last_seq = last_seq

    def _cut_back(self, segment: _Segment) -> None:
        """Remove a partial write; if the disk refuses even that, retire the segment (its torn
        tail is never read: a reader moves on to the next segment, a restart cuts it)."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, segment.size)
        except OSError:
            os.close(self._fd)
            self._fd = None

    def _open_segment(self, first_seq: int) -> _Segment:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if self._segments and self._segments[-1].last_seq < 0:
            empty = self._segments.pop()  # opened, but the disk refused its first record
            empty.path.unlink(missing_ok=True)
        segment = _Segment(first_seq, self.directory / f"{first_seq:020d}{SEGMENT_SUFFIX}")
        self._fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._segments.append(segment)
        return segment

    # -- reader -------------------------------------------------------------------------------

    @_locked
    def read_next(self) -> SpooledRecord | None:
        """The next record the sender has not read yet, in append order; None when caught up."""
        while self._read_seg < len(self._segments):
            segment = self._segments[self._read_seg]
            offset = self._read_pos - self._read_base
            if offset >= len(self._read_buf) and self._read_pos < segment.size:
                with segment.path.open("rb") as f:
                    f.seek(self._read_pos)
                    self._read_buf, self._read_base, offset = f.read(), self._read_pos, 0
            record = _decode(self._read_buf, offset)
            if record is not None:
                self._read_pos += record.size
                if record.seq < self._read_next_seq:
                    continue  # acknowledged before a restart, or before a rewind point
                self._read_next_seq = record.seq + 1
                return record
            if self._read_seg >= len(self._segments) - 1:
                break
            self._read_seg += 1
            self._read_buf, self._read_base, self._read_pos = b"", 0, 0
        return self._read_held()

    def _read_held(self) -> SpooledRecord | None:
        """After the disk's records, those held in memory (seqs run on without a gap)."""
        if not self._held:
            return None
        index = max(0, self._read_next_seq - self._held[0].seq)
        if index >= len(self._held):
            return None
        record = self._held[index]
        self._read_next_seq = record.seq + 1
        return record

    @_locked
    def rewind(self, seq: int) -> None:
        """Read again from ``seq`` (the sender lost records it had handed to Kafka)."""
        self._read_seg, self._read_buf, self._read_base, self._read_pos = 0, b"", 0, 0
        self._read_next_seq = seq

    # -- acknowledgements ----------------------------------------------------------------------

    @_locked
    def ack(self, seq: int, size: int) -> None:
        """Kafka has every record up to ``seq`` (acks come in seq order); drop spent segments."""
        held = bool(self._held) and seq >= self._held[0].seq
        while self._held and self._held[0].seq <= seq:
            self.held_bytes -= self._held.popleft().size
        self._drop_segments_up_to(min(self.acked_seq, seq - 1))
        self.acked_seq = max(self.acked_seq, seq)
        if not held:
            self._head_offset += size
        self._pending_bytes = max(0, self._pending_bytes - size)
        self._acked_dirty = True
        self._drop_segments_up_to(self.acked_seq)

    def _drop_segments_up_to(self, seq: int) -> None:
        while len(self._segments) > 1 and self._segments[0].last_seq <= seq:
            done = self._segments.popleft()
            done.path.unlink(missing_ok=True)
            self._read_seg = max(0, self._read_seg - 1)
            self._head_offset = 0

    @_locked
    def checkpoint(self) -> None:
        """Persist the acknowledged watermark (called a few times a second, not per record)."""
        if not self._acked_dirty:
            return
        tmp = self.directory / (ACKED_FILE + ".tmp")
        try:
            tmp.write_text(str(self.acked_seq))
            os.replace(tmp, self.directory / ACKED_FILE)
        except OSError:
            return  # a full disk: the next checkpoint tries again (a restart resends a little)
        self._acked_dirty = False

    @_locked
    def close(self) -> None:
        self.checkpoint()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            except OSError:
                pass  # the records are in the page cache; nothing more can be done here
            finally:
                os.close(fd)

    # -- metrics -------------------------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    @_locked
    def oldest_pending_age_ms(self) -> int:
        """Age of the oldest record Kafka has not acknowledged (0 when there is none)."""
        if self._pending_bytes == 0:
            return 0
        if self._held and self._held[0].seq <= self.acked_seq + 1:
            return max(0, (time.time_ns() // 1000 - self._held[0].written_us) // 1000)
        if not self._segments:
            return 0
        with self._segments[0].path.open("rb") as f:
            f.seek(self._head_offset)
            header = f.read(_FRAME.size)
        if len(header) < _FRAME.size:
            return 0
        written_us: int = _FRAME.unpack(header)[3]
        return max(0, (time.time_ns() // 1000 - written_us) // 1000)

    # -- startup -------------------------------------------------------------------------------

    def _read_acked(self) -> int:
        try:
            return int((self.directory / ACKED_FILE).read_text().strip())
        except (FileNotFoundError, ValueError):
            return -1

    def _recover(self) -> None:
        """Index segments left by a previous run; cut a torn tail; count what is unacknowledged."""
        for path in sorted(self.directory.glob(f"*{SEGMENT_SUFFIX}")):
            buf = path.read_bytes()
            segment = _Segment(int(path.stem), path)
            pos = head_offset = 0
            while (record := _decode(buf, pos)) is not None:
                if record.seq <= self.acked_seq:
                    head_offset = pos + record.size
                pos += record.size
                segment.last_seq = record.seq
                if record.seq > self.acked_seq:
                    self._pending_bytes += record.size
            if pos < len(buf):
                with path.open("r+b") as f:
                    f.truncate(pos)
            segment.size = pos
            if segment.last_seq <= self.acked_seq:
                path.unlink()
                continue
            if not self._segments:
                self._head_offset = head_offset
            self._segments.append(segment)


def _problem(error: OSError) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    return f"disk failing ({errno.errorcode.get(error.errno or 0, error.errno)})"
