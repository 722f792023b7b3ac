"""Settings of the call-state worker: every CALLREC_STREAMS_* variable (see streams/README.md)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field

from callrec.settings import CommonSettings
from callrec.streams.rules import Rules


def default_worker_id() -> str:
    return f"streams-{socket.gethostname()}-{os.getpid()}"


class StreamsSettings(CommonSettings):
    streams_app_id: str = "callrec-streams"
    """The consumer group, and the prefix of the worker's own topics (changelog, ticks)."""
    streams_worker_id: str = Field(default_factory=default_worker_id)
    """producer_id of the snapshots, metrics and dead letters this worker emits."""
    streams_data_dir: Path = Path("var/streams")
    """Where the health file goes."""
    streams_partitions: int = 6
    """Partitions of the call-keyed topics (the table and the tick topic must match)."""
    streams_replication: int = 1
    """Replication factor of the worker's own topics (changelog, ticks)."""
    streams_tick_s: float = 1.0
    streams_metrics_window_s: float = 10.0
    streams_batch_max: int = 2000
    """Events folded per batch: one table write per call per batch, not per event."""
    streams_batch_within_s: float = 0.05
    streams_fetch_min_bytes: int = 1_048_576
    """The broker answers a fetch once it has this much, or after ``batch_within_s``: at a
    site's pace a fetch then carries a batch, not the handful of records that came since the
    last one (each fetch costs the worker a request and a response to parse)."""
    streams_commit_interval_s: float = 0.5
    """How often changed calls go to the changelog and the offsets are committed; also the
    longest a snapshot waits in the outbox."""
    streams_recorder_lookback_s: float = 120.0
    """How far back in rec.recorders.v1 a starting worker reads heartbeats."""
    streams_session_timeout_s: float = 10.0
    """Kafka group session timeout: how fast the group notices a dead worker."""
    streams_heartbeat_interval_s: float = 1.0
    streams_log_level: str = "info"

    streams_media_timeout_s: float = 8.0
    streams_recorder_lost_after_s: float = 5.0
    streams_half_call_window_s: float = 5.0
    streams_segment_window_s: float = 5.0
    streams_missing_chunks_wait_s: float = 60.0
    streams_session_grace_s: float = 2.0
    streams_audio_snapshot_interval_s: float = 5.0
    streams_terminal_retention_s: float = 3600.0

    @property
    def tick_topic(self) -> str:
        return f"{self.streams_app_id}-ticks"

    @property
    def changelog_topic(self) -> str:
        return f"{self.streams_app_id}-calls-changelog"

    @property
    def health_file(self) -> Path:
        return self.streams_data_dir / "health.json"

    def rules(self) -> Rules:
        return Rules(
            media_timeout_s=self.streams_media_timeout_s,
            recorder_lost_after_s=self.streams_recorder_lost_after_s,
            half_call_window_s=self.streams_half_call_window_s,
            segment_window_s=self.streams_segment_window_s,
            missing_chunks_wait_s=self.streams_missing_chunks_wait_s,
            session_grace_s=self.streams_session_grace_s,
            audio_snapshot_interval_s=self.streams_audio_snapshot_interval_s,
            terminal_retention_s=self.streams_terminal_retention_s,
        )
