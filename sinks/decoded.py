"""A call's decoded audio between decoding and rendering (render.Samples), read a window at a time.

Each leg's audio is its chunks' samples end to end (``ChunkAudio.base``). The decoder's arrays are
kept as they are up to a budget: a call under it never copies its samples or creates a file
(whose fresh pages cost more than the G.711 decode itself). Past the budget they go to an unlinked
temporary file, so a call of hours costs a few numbers per chunk in memory, not its samples.
"""

from __future__ import annotations

import bisect
import tempfile
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from callrec.sinks.placed import ChunkAudio
from callrec.sinks.render import Interval, Pcm, read_upsampled

IN_MEMORY_BYTES = 2 << 20
"""Decoded samples a call keeps in memory (~1 minute of a two-leg 8 kHz call); the rest go to
the file."""


class DecodedAudio:
    """Each leg's decoded audio, in memory up to ``in_memory`` bytes, then in a file."""

    def __init__(self, directory: Path | None = None, in_memory: int = IN_MEMORY_BYTES) -> None:
        self.directory = directory
        self.room = in_memory
        self.file: BinaryIO | None = None
        self.size = 0
        self.legs: dict[str, _LegAudio] = {}

    def __enter__(self) -> DecodedAudio:
        return self

    def __exit__(self, *_: object) -> None:
        if self.file is not None:
            self.file.close()

    def put(self, leg_id: str, chunks: Sequence[ChunkAudio], samples: Pcm | None) -> None:
        """A leg's chunks in order (``decode_into``), one after the other in its audio, and
        their samples end to end; None for chunks that did not decode."""
        leg = self.legs.get(leg_id)
        if leg is None:
            leg = self.legs[leg_id] = _LegAudio()
        leg.starts.extend([c.base for c in chunks])
        leg.ends.extend([c.base + c.samples for c in chunks])
        base = chunks[0].base
        if samples is None:
            leg.failed.extend((c.base, c.base + c.samples) for c in chunks)
        elif leg.filed_from is None and samples.nbytes <= self.room:
            self.room -= samples.nbytes
            leg.held_starts.append(base)
            leg.held.append(samples)
        else:
            self._file_out(leg, base, samples)

    def _file_out(self, leg: _LegAudio, base: int, samples: Pcm) -> None:
        """The leg's samples from ``base`` on go to the file, at ``leg.at + sample * 2``."""
        if self.file is None:
            if self.directory is not None:
                self.directory.mkdir(parents=True, exist_ok=True)
            self.file = tempfile.TemporaryFile(dir=self.directory)
        if leg.filed_from is None:
            leg.filed_from, leg.at = base, self.size - base * 2
        end = leg.at + (base + len(samples)) * 2
        self.file.seek(end - samples.nbytes)
        self.file.write(np.ascontiguousarray(samples, dtype="<i2").data)
        self.size = max(self.size, end)

    def failed(self, leg_id: str, a: int, b: int) -> list[Interval]:
        """The parts of the leg's samples a:b that did not decode."""
        leg = self.legs.get(leg_id)
        if leg is None:
            return [(a, b)]
        return [(max(a, s), min(b, e)) for s, e in leg.failed if s < b and e > a]

    def read(self, leg_id: str, a: int, n: int, factor: int) -> Pcm:
        """``n`` samples from ``a`` of the leg's audio upsampled by ``factor``."""
        leg = self.legs[leg_id]
        return read_upsampled(lambda s, c: self._read(leg, s, c), leg.starts, leg.ends, a, n,
                              factor)

    def _read(self, leg: _LegAudio, start: int, count: int) -> Pcm:
        """Samples start:start + count of the leg (silence where nothing decoded): a view of one
        held array when it has them all."""
        end = start + count
        i = max(0, bisect.bisect_right(leg.held_starts, start) - 1)
        if i < len(leg.held) and leg.held_starts[i] <= start:
            piece = leg.held[i]
            if end <= leg.held_starts[i] + len(piece):
                return piece[start - leg.held_starts[i] : end - leg.held_starts[i]]
        out = np.zeros(count, np.int16)
        for at, piece in zip(leg.held_starts[i:], leg.held[i:], strict=True):
            lo, hi = max(start, at), min(end, at + len(piece))
            if at >= end:
                break
            if hi > lo:
                out[lo - start : hi - start] = piece[lo - at : hi - at]
        if leg.filed_from is not None and end > leg.filed_from and self.file is not None:
            lo = max(start, leg.filed_from)
            self.file.seek(leg.at + lo * 2)
            data = np.frombuffer(self.file.read((end - lo) * 2), dtype="<i2")
            out[lo - start : lo - start + len(data)] = data
        return out


class _LegAudio:
    """A leg's held arrays and where they start, where its audio is in the file from
    ``filed_from`` on, its chunks' extents and its failed ones."""

    __slots__ = ("at", "ends", "failed", "filed_from", "held", "held_starts", "starts")

    def __init__(self) -> None:
        self.held_starts: list[int] = []
        self.held: list[Pcm] = []
        self.filed_from: int | None = None
        self.at = 0
        self.starts = array("q")
        self.ends = array("q")
        self.failed: list[Interval] = []
