"""A process's output into its log file, rotated by size: ``<name>.log``, then ``.log.1`` ...

The stack starts its processes detached and leaves them running after ``./run up`` returns, so
no supervisor is there to rotate their logs; and a process can be flooded into logging (a peer
sending junk SIP, a broker flapping) on the same disk as the recorder's spool. Every managed
process therefore writes through a pipe into this small reader, which keeps at most
``max_bytes`` per file and ``backups`` old files: the newest output always survives, the oldest
goes. It catches everything the process writes (logging, prints of libraries, tracebacks, the
JVM's and Go's own output), which a handler inside one process could not.

It exits when the pipe closes (the process and all it started have exited), after writing the
last of it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

READ_BYTES = 65536


class RotatingLog:
    """Appends to ``path``; past ``max_bytes`` it cuts at a line end and starts a new file."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        if max_bytes < 1 or backups < 0:
            raise ValueError("max_bytes must be positive and backups not negative")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, data: bytes) -> None:
        while data:
            room = self.max_bytes - self._size
            if len(data) <= room:
                self._append(data)
                return
            cut = data.rfind(b"\n", 0, room) + 1  # keep lines whole where one fits
            if cut == 0 and self._size == 0:
                cut = room  # a single line longer than a whole file: split it
            self._append(data[:cut])
            data = data[cut:]
            self._rotate()

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)

    def _rotate(self) -> None:
        os.close(self._fd)
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for n in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._fd = self._open()
        self._size = 0

    def close(self) -> None:
        os.close(self._fd)


def pump(source_fd: int, log: RotatingLog) -> None:
    """Copy ``source_fd`` into ``log`` until end of file."""
    while data := os.read(source_fd, READ_BYTES):
        log.write(data)


def main(argv: list[str]) -> int:
    path, max_bytes, backups = Path(argv[0]), int(argv[1]), int(argv[2])
    log = RotatingLog(path, max_bytes, backups)
    try:
        pump(sys.stdin.fileno(), log)
    finally:
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
