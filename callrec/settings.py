"""Settings every process shares; each process's own model extends this one.

Only the defaults live here: every value comes from ``CALLREC_*`` environment variables, read once
in the process's ``main()`` and passed down.
"""

from __future__ import annotations

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "minioadmin", "changeme", "secret", "password", "admin", "test"}


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLREC_", extra="ignore", frozen=True)

    kafka_bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma separated."""


class S3Settings(CommonSettings):
    s3_endpoint: str = "127.0.0.1:9000"
    """host:port of the S3 server."""
    s3_secure: bool = False
    s3_access_key: str
    s3_secret_key: str
    s3_bucket: str = "recordings"

    @field_validator("s3_access_key", "s3_secret_key")
    @classmethod
    def _no_placeholder(cls, value: str) -> str:
        if value.lower() in PLACEHOLDER_SECRETS or len(value) < 8:
            raise ValueError("refusing a placeholder or short S3 credential; set a real one")
        return value
