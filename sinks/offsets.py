"""Which offsets the mixer may commit: never past audio of a call it has not archived yet.

Kafka is the mixer's spool of record. In each partition the committed offset of rec.audio.v1
stays at the first chunk of the oldest open call, and that of rec.calls.v1 at the first snapshot
of the oldest open call, so a worker that replaces a dead one re-reads exactly what it needs to
rebuild every open call and to learn that it ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PartitionLedger:
    """Open calls of one partition number and how far each topic has been read."""

    audio_position: int | None = None
    calls_position: int | None = None
    first_audio: dict[str, int] = field(default_factory=dict)
    first_snapshot: dict[str, int] = field(default_factory=dict)

    def saw_chunk(self, call_key: str, offset: int) -> None:
        self.first_audio[call_key] = min(offset, self.first_audio.get(call_key, offset))
        self.audio_position = max(offset + 1, self.audio_position or 0)

    def saw_snapshot(self, call_key: str, offset: int, first_audio_offset: int | None) -> None:
        self.first_snapshot[call_key] = min(offset, self.first_snapshot.get(call_key, offset))
        if first_audio_offset is not None:
            known = self.first_audio.get(call_key, first_audio_offset)
            self.first_audio[call_key] = min(known, first_audio_offset)
        self.calls_position = max(offset + 1, self.calls_position or 0)

    def passed(self, audio_offset: int | None = None, calls_offset: int | None = None) -> None:
        """Records read but not kept (other clusters' calls, already archived calls)."""
        if audio_offset is not None:
            self.audio_position = max(audio_offset + 1, self.audio_position or 0)
        if calls_offset is not None:
            self.calls_position = max(calls_offset + 1, self.calls_position or 0)

    def closed(self, call_key: str) -> None:
        self.first_audio.pop(call_key, None)
        self.first_snapshot.pop(call_key, None)

    def audio_commit(self) -> int | None:
        return _lowest(self.first_audio, self.audio_position)

    def calls_commit(self) -> int | None:
        return _lowest(self.first_snapshot, self.calls_position)


def _lowest(open_offsets: dict[str, int], position: int | None) -> int | None:
    if open_offsets:
        lowest = min(open_offsets.values())
        return lowest if position is None else min(lowest, position)
    return position
