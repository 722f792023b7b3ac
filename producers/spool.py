"""The recorder's write-ahead spool: every event is on disk before it is handed to Kafka.

Kafka may be away for minutes; CUCM keeps sending audio. Each event is appended to a segment
file under the recorder's data dir, read back in order by the Kafka sender, and forgotten only
when the broker has acknowledged it (``ack``), so a broker outage loses nothing and a recorder
restart replays what was not acknowledged. The spool is bounded: ``append`` refuses with
SpoolFull beyond ``max_bytes``, and the recorder stops taking calls well before that.

Records are written with plain ``os.write`` (they survive a process crash through the page
cache) and fsynced every ``sync_interval_s``: a power cut can lose that last fraction of a second.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from callrec.producers.errors import SpoolFull

_FRAME = struct.Struct("!IIQQ")  # crc32 of the body, body length, record seq, written at (us)
_BODY = struct.Struct("!BHB")  # topic, key, event-type lengths
SEGMENT_SUFFIX = ".spool"
ACKED_FILE = "acked"


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
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
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

    def append(self, topic: str, key: bytes, event_type: str, value: bytes) -> int:
        """Store one event durably before anything else happens to it; returns its seq."""
        seq = self.next_seq
        frame = _encode(seq, time.time_ns() // 1000, topic, key, event_type, value)
        if self._pending_bytes + len(frame) > self.max_bytes:
            raise SpoolFull(f"spool holds {self._pending_bytes} bytes, bound {self.max_bytes}")
        segment = self._segments[-1] if self._segments else None
        if segment is None or self._fd is None or segment.size >= self.segment_bytes:
            segment = self._open_segment(seq)
        assert self._fd is not None
        try:
            os.write(self._fd, frame)
        except OSError as e:
            raise SpoolFull(f"cannot write the spool: {e}") from e
        segment.size += len(frame)
        segment.last_seq = seq
        self._pending_bytes += len(frame)
        self.next_seq = seq + 1
        now = time.monotonic()
        if now - self._last_sync >= self.sync_interval_s:
            os.fsync(self._fd)
            self._last_sync = now
        return seq

    def _open_segment(self, first_seq: int) -> _Segment:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
        segment = _Segment(first_seq, self.directory / f"{first_seq:020d}{SEGMENT_SUFFIX}")
        self._fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._segments.append(segment)
        return segment

    # -- reader -------------------------------------------------------------------------------

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
            if self._read_seg == len(self._segments) - 1:
                return None
            self._read_seg += 1
            self._read_buf, self._read_base, self._read_pos = b"", 0, 0
        return None

    def rewind(self, seq: int) -> None:
        """Read again from ``seq`` (the sender lost records it had handed to Kafka)."""
        self._read_seg, self._read_buf, self._read_base, self._read_pos = 0, b"", 0, 0
        self._read_next_seq = seq

    # -- acknowledgements ----------------------------------------------------------------------

    def ack(self, seq: int, size: int) -> None:
        """Kafka has every record up to ``seq`` (acks come in seq order); drop spent segments."""
        self._drop_segments_up_to(min(self.acked_seq, seq - 1))
        self.acked_seq = max(self.acked_seq, seq)
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

    def checkpoint(self) -> None:
        """Persist the acknowledged watermark (called a few times a second, not per record)."""
        if not self._acked_dirty:
            return
        tmp = self.directory / (ACKED_FILE + ".tmp")
        tmp.write_text(str(self.acked_seq))
        os.replace(tmp, self.directory / ACKED_FILE)
        self._acked_dirty = False

    def close(self) -> None:
        self.checkpoint()
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    # -- metrics -------------------------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def oldest_pending_age_ms(self) -> int:
        """Age of the oldest record Kafka has not acknowledged (0 when there is none)."""
        if self._pending_bytes == 0 or not self._segments:
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
