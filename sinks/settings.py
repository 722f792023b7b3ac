"""Settings of the mixer worker and its CLI, all from CALLREC_* environment variables."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, field_validator

from callrec.settings import CommonSettings, S3Settings
from callrec.sinks.encode import FORMATS
from callrec.sinks.store import LockPolicy

DEFAULT_HEALTH_FILE = Path("var/mixer/health.json")


def default_producer_id() -> str:
    return f"mixer-{socket.gethostname()}-{os.getpid()}"


class MixerSettings(S3Settings):
    mixer_group_id: str = "callrec-mixer"
    """Kafka consumer group: every worker of one group shares the partitions."""
    mixer_producer_id: str = Field(default_factory=default_producer_id)
    mixer_format: str = "wav"
    """wav, flac, opus (Ogg) or mp3."""
    mixer_channels: int = 2
    """2: near end left, far end right; 1: mono mix."""
    mixer_clusters: str = ""
    """Comma-separated CUCM cluster ids to archive; empty archives every cluster."""
    mixer_spool_dir: Path = Path("var/mixer/spool")
    mixer_spool_memory_mb: int = 256
    mixer_spool_disk_mb: int = 10_240
    mixer_complete_wait_s: float = 3.0
    """After a call ends, how long to wait for chunks the CallRecord counts but not yet read."""
    mixer_concurrency: int = 2
    """Calls mixed at once (each uses one core while encoding)."""
    mixer_commit_interval_s: float = 1.0
    mixer_session_timeout_ms: int = 10_000
    mixer_fetch_min_bytes: int = 65_536
    mixer_fetch_max_wait_ms: int = 50
    mixer_upload_backoff_max_s: float = 30.0
    mixer_object_lock: bool = True
    """Create a missing bucket with object lock (WORM)."""
    mixer_require_object_lock: bool = True
    """Refuse to start when the bucket has no object lock (or the server refuses it)."""
    mixer_retention_days: int = 1827
    """Object lock retention of a recording from the call's start, of a manifest from its
    writing, and the default retention of a bucket the mixer creates (5 years: MiFID II);
    0 leaves objects to the bucket's default retention, if any."""
    mixer_retention_mode: str = "COMPLIANCE"
    """COMPLIANCE: nobody, root included, deletes a version or shortens its retention before
    it expires; GOVERNANCE: an account with BypassGovernanceRetention can."""
    mixer_archived_lookback_days: int = 8
    """How far back rec.recordings.v1 is read at start to know which calls are done."""
    mixer_health_file: Path = DEFAULT_HEALTH_FILE
    mixer_manifest_key: Path = Path("var/mixer/manifest-ed25519.pem")
    """Ed25519 private key (PEM, PKCS#8) that signs the daily manifests; made by `callrec mixer
    keygen` (the worker refuses to start without it)."""
    mixer_manifest_public_key: Path | None = None
    """The pinned public key `callrec mixer verify` trusts (never the copy in the bucket)."""
    mixer_manifest_hour_utc: int = 1
    """Hour (UTC) after which the worker writes yesterday's manifest."""

    @field_validator("mixer_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value.lower() not in FORMATS:
            raise ValueError(f"must be one of {sorted(FORMATS)}")
        return value.lower()

    @field_validator("mixer_channels")
    @classmethod
    def _channels(cls, value: int) -> int:
        if value not in (1, 2):
            raise ValueError("must be 1 (mono) or 2 (stereo)")
        return value

    @field_validator("mixer_retention_mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value.upper() not in ("GOVERNANCE", "COMPLIANCE"):
            raise ValueError("must be GOVERNANCE or COMPLIANCE")
        return value.upper()

    @property
    def lock(self) -> LockPolicy:
        return LockPolicy(self.mixer_object_lock, self.mixer_require_object_lock,
                          self.mixer_retention_mode, self.mixer_retention_days)

    @property
    def clusters(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.mixer_clusters.split(",") if c.strip())


class HealthSettings(CommonSettings):
    """What `callrec mixer health` needs: only where the worker writes its status."""

    mixer_health_file: Path = DEFAULT_HEALTH_FILE


class KeySettings(CommonSettings):
    """What `callrec mixer keygen` needs: only where the signing key goes."""

    mixer_manifest_key: Path = Path("var/mixer/manifest-ed25519.pem")
