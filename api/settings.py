"""Settings of one REST replica (``CALLREC_API_*``), built in ``main()`` and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from callrec.settings import CommonSettings, S3Settings


class TokenSettings(CommonSettings):
    """What `callrec api token ...` needs: only where the tokens are."""

    api_tokens_file: Path = Path("var/api/tokens.json")
    """Hashed bearer tokens, shared by every replica of one site."""


class ApiSettings(S3Settings, TokenSettings):
    api_host: str = "127.0.0.1"
    """Address the HTTP server listens on."""
    api_port: int = 8080
    api_replica_id: str = "api-1"
    """Names this replica in audit events and logs."""
    api_data_dir: Path = Path("var/api")
    """This replica's own state: its SQLite read model and health.json."""
    api_signing_key_file: Path = Path("var/api/playback.key")
    """HMAC key of playback URLs (made on first use, 0600); shared by the replicas."""
    api_playback_ttl_s: int = 300
    """How long a signed playback URL stays valid."""
    api_manifest_public_key: Path | None = None
    """Ed25519 public key of the daily manifests; default: the one published in the bucket."""
    api_io_threads: int = 128
    """Threads (and S3 connections) for blocking store reads: long ranges and downloads
    streamed at once, /verify, /peaks."""
    api_s3_connections: int = 100
    """Keep-alive S3 connections for short ranges (a seeking player's), read on the event
    loop: a burst of that many seeks gets one each, more wait for a free one."""

    api_cache_bytes: int = Field(256 * 2**20, ge=0)
    """Memory for verified copies of whole recordings (0: no cache), so a player's later
    ranges and other listeners of the same call never wait on the store."""
    api_cache_object_max_bytes: int = Field(32 * 2**20, ge=0)
    """Recordings larger than this are never cached (they stream from the store)."""
    api_cache_max_age_s: float = Field(3600.0, gt=0)
    """A cached recording is served from memory at most this long after it was read."""

    @property
    def db_path(self) -> Path:
        return self.api_data_dir / "readmodel.sqlite3"
