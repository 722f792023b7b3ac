"""Settings of the metrics exporter: every CALLREC_EXPORTER_* variable (see exporter/README.md)."""

from __future__ import annotations

import os
import socket

from pydantic import Field

from callrec.settings import CommonSettings


def default_exporter_id() -> str:
    return f"exporter-{socket.gethostname()}-{os.getpid()}"


class ExporterSettings(CommonSettings):
    exporter_host: str = "127.0.0.1"
    """Address the /metrics endpoint listens on."""
    exporter_port: int = 9479
    exporter_id: str = Field(default_factory=default_exporter_id)
    """Kafka client id, and producer_id of the dead letters it writes."""
    exporter_lookback_s: float = 3600.0
    """How far back a starting exporter reads heartbeats, call snapshots and recordings
    (rec.metrics.v1 is read from its start, so the counters survive a restart)."""
    exporter_recorder_lost_after_s: float = 5.0
    """A recorder silent this long is down (callrec_recorder_up 0); the call state's default."""
    exporter_lag_interval_s: float = 5.0
    """How often every consumer group's lag is read."""
    exporter_read_audio: bool = True
    """Read rec.audio.v1 for chunk delivery latency (only each chunk's header is decoded)."""
    exporter_forget_after_s: float = 86_400.0
    """Recorders silent, calls never archived, archived call keys: forgotten after this."""
    exporter_retry_s: float = 1.0
    """Wait before reconnecting after Kafka failed."""
    exporter_log_level: str = "info"
    exporter_manifest_check_s: float = 300.0
    """How often S3 is asked which day last got its signed manifest (needs the S3 settings)."""

    s3_endpoint: str = "127.0.0.1:9000"
    s3_secure: bool = False
    s3_access_key: str | None = None
    """Without S3 credentials the manifest is not checked (its series is absent)."""
    s3_secret_key: str | None = None
    s3_bucket: str = "recordings"
