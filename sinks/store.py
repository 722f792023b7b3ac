"""The object store adapter (minio SDK): a write-once bucket of recordings and manifests.

Storing is idempotent: the key is deterministic and an object is never written again for the same
call version, so a retry after a lost response, or a second worker finishing the same call, finds
the first object instead of making another; only a newer call version (the call reopened) adds a
version of the object. Object lock (WORM) and versioning are used where the server has them.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, GOVERNANCE
from minio.error import MinioException, S3Error
from minio.retention import Retention
from minio.versioningconfig import VersioningConfig

from callrec.sinks.errors import StoreUnavailable

log = logging.getLogger(__name__)
META_PREFIX = "x-amz-meta-"
MISSING_CODES = {"NoSuchKey", "NoSuchObject", "NoSuchVersion"}


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str | None
    version_id: str | None
    metadata: dict[str, str]


def connect(endpoint: str, access_key: str, secret_key: str, secure: bool) -> Minio:
    """A client that fails fast: the worker's own backoff decides when to try again."""
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=3, read=30),
        retries=urllib3.Retry(total=1, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    return Minio(endpoint, access_key, secret_key, secure=secure, http_client=http)


class RecordingStore:
    def __init__(self, client: Minio, bucket: str, retention_mode: str = GOVERNANCE) -> None:
        self.client = client
        self.bucket = bucket
        self.retention_mode = retention_mode
        self.object_lock = False

    def ensure_bucket(self, object_lock: bool) -> None:
        """Create the bucket with object lock if asked and supported, else with versioning."""
        with _translated(f"bucket {self.bucket}"):
            if self.client.bucket_exists(self.bucket):
                self.object_lock = object_lock and self._has_object_lock()
                return
            if object_lock:
                try:
                    self.client.make_bucket(self.bucket, object_lock=True)
                    self.object_lock = True
                    return
                except S3Error as e:
                    log.warning("object lock refused by the server (%s); versioning only", e.code)
            self.client.make_bucket(self.bucket)
            try:
                self.client.set_bucket_versioning(self.bucket, VersioningConfig(ENABLED))
            except S3Error as e:
                log.warning("bucket versioning refused by the server (%s)", e.code)

    def _has_object_lock(self) -> bool:
        try:
            self.client.get_object_lock_config(self.bucket)
        except S3Error:
            return False
        except ValueError:  # the SDK cannot parse a lock configuration without a default rule
            return True
        return True

    def find(self, key: str) -> StoredObject | None:
        with _translated(f"stat {key}"):
            try:
                stat = self.client.stat_object(self.bucket, key)
            except S3Error as e:
                if e.code in MISSING_CODES:
                    return None
                raise
        metadata = {
            k.lower().removeprefix(META_PREFIX): v
            for k, v in (stat.metadata or {}).items()
            if k.lower().startswith(META_PREFIX)
        }
        return StoredObject(
            key, stat.size or 0, metadata.get("sha256"), stat.version_id, metadata
        )

    def put(
        self,
        key: str,
        data: bytes,
        content_type: str,
        metadata: dict[str, str],
        retain_until: datetime | None,
    ) -> StoredObject:
        """Write an object unless one of the same or a newer call version is stored; either way
        return what is stored. A newer call version (a call that reopened after its recording)
        becomes a new version of the object; versioning and object lock keep the old one."""
        existing = self.find(key)
        if existing is not None and _call_version(existing) >= _call_version_of(metadata):
            return existing
        retention = None
        if retain_until is not None and self.object_lock:
            retention = Retention(self.retention_mode, retain_until)
        with _translated(f"put {key}"):
            result = self.client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), content_type=content_type,
                metadata=metadata, retention=retention,  # type: ignore[arg-type]
            )
        return StoredObject(
            key, len(data), metadata.get("sha256"), result.version_id, dict(metadata)
        )

    def replace(self, key: str, data: bytes, content_type: str) -> None:
        """Write a derived object (a manifest) unless the same bytes are already there; in a
        versioned bucket an earlier different content stays as an older version."""
        digest = hashlib.sha256(data).hexdigest()
        existing = self.find(key)
        if existing is not None and existing.sha256 == digest:
            return
        with _translated(f"put {key}"):
            self.client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), content_type=content_type,
                metadata={"sha256": digest},
            )

    def read(self, key: str) -> bytes:
        with _translated(f"get {key}"):
            response = self.client.get_object(self.bucket, key)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

    def keys(self, prefix: str) -> Iterator[str]:
        with _translated(f"list {prefix}"):
            for item in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                if item.object_name and not item.is_dir:
                    yield item.object_name


def _call_version(stored: StoredObject) -> int:
    return _call_version_of(stored.metadata)


def _call_version_of(metadata: dict[str, str]) -> int:
    """The CallRecord version a recording was mixed from (0 when the metadata lacks it)."""
    try:
        return int(metadata.get("call-version", "0"))
    except ValueError:
        return 0


class _translated:
    """Turn the SDK's and urllib3's failures into StoreUnavailable, keeping 'not found' apart."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: Any) -> None:
        if isinstance(error, S3Error) and error.code in MISSING_CODES:
            return
        if isinstance(error, MinioException | urllib3.exceptions.HTTPError | OSError):
            raise StoreUnavailable(f"object store: {self.what} failed: {error}") from error
