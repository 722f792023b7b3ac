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
from typing import Any, BinaryIO

import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE, ENABLED
from minio.error import MinioException, S3Error
from minio.objectlockconfig import DAYS, ObjectLockConfig
from minio.retention import Retention
from minio.versioningconfig import VersioningConfig

from callrec.sinks.errors import ObjectLockMissing, StoreUnavailable

log = logging.getLogger(__name__)
META_PREFIX = "x-amz-meta-"
MISSING_CODES = {"NoSuchKey", "NoSuchObject", "NoSuchVersion"}
BAD_VERSION_CODES = {"BadRequest", "InvalidArgument"}
PART_SIZE = 16 * 1024 * 1024
"""Upload part size: what a long recording costs in memory while it is sent."""


@dataclass(frozen=True)
class LockPolicy:
    """What the settings ask of the bucket's object lock."""

    enabled: bool = True
    required: bool = True
    mode: str = COMPLIANCE
    default_days: int = 0
    """The bucket's default retention, set when the mixer creates the bucket (0: none)."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str | None
    version_id: str | None
    metadata: dict[str, str]


def connect(endpoint: str, access_key: str, secret_key: str, secure: bool) -> Minio:
    """A client that fails fast: the worker's own backoff decides when to try again. It keeps
    a connection per thread that may put at once (asyncio's default pool: up to 32), not one
    shared: calls ending together must not each open a new connection."""
    http = urllib3.PoolManager(
        maxsize=32,
        timeout=urllib3.Timeout(connect=3, read=30),
        retries=urllib3.Retry(total=1, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    return Minio(endpoint, access_key, secret_key, secure=secure, http_client=http)


class RecordingStore:
    def __init__(self, client: Minio, bucket: str, retention_mode: str = COMPLIANCE) -> None:
        self.client = client
        self.bucket = bucket
        self.retention_mode = retention_mode
        self.object_lock = False

    def ensure_bucket(self, lock: LockPolicy) -> None:
        """Create the bucket with object lock (and ``lock``'s default retention) if it is missing
        and we may; then find out whether it is locked. Without lock the bucket is only
        versioned, which ``lock.required`` refuses (ObjectLockMissing): recordings would be
        deletable by anyone holding the credentials."""
        with _translated(f"bucket {self.bucket}"):
            if not self.client.bucket_exists(self.bucket):
                self._create(lock)
            self.object_lock = self.has_object_lock()
        if lock.required and not self.object_lock:
            raise ObjectLockMissing(
                f"bucket {self.bucket} has no object lock and CALLREC_MIXER_REQUIRE_OBJECT_LOCK "
                "is on: create the bucket with object lock (S3 allows it only at creation; "
                "`./run up` does) or point CALLREC_S3_BUCKET at a locked bucket")
        if not self.object_lock:
            log.warning("bucket %s has no object lock: recordings are versioned, not WORM",
                        self.bucket)

    def _create(self, lock: LockPolicy) -> None:
        if lock.enabled:
            try:
                self.client.make_bucket(self.bucket, object_lock=True)
                if lock.default_days > 0:
                    self.client.set_object_lock_config(self.bucket, ObjectLockConfig(
                        lock.mode, lock.default_days, DAYS))
                return
            except S3Error as e:
                if lock.required:
                    raise ObjectLockMissing(
                        f"the S3 server refused a bucket with object lock ({e.code})") from e
                log.warning("object lock refused by the server (%s); versioning only", e.code)
        self.client.make_bucket(self.bucket)
        try:
            self.client.set_bucket_versioning(self.bucket, VersioningConfig(ENABLED))
        except S3Error as e:
            log.warning("bucket versioning refused by the server (%s)", e.code)

    def has_object_lock(self) -> bool:
        try:
            self.client.get_object_lock_config(self.bucket)
        except S3Error as e:
            if e.code == "AccessDenied":
                raise ObjectLockMissing(
                    f"cannot read the object lock of bucket {self.bucket} (AccessDenied): grant "
                    "the mixer's account s3:GetBucketObjectLockConfiguration") from e
            return False
        except ValueError:  # the SDK cannot parse a lock configuration without a default rule
            return True
        return True

    def find(self, key: str, version_id: str | None = None) -> StoredObject | None:
        """The object (its newest version, or ``version_id``), None if there is none; a
        version id the server cannot parse names no version either."""
        with _translated(f"stat {key}"):
            try:
                stat = self.client.stat_object(self.bucket, key, version_id=version_id)
            except S3Error as e:
                if e.code in MISSING_CODES or (version_id and e.code in BAD_VERSION_CODES):
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
        data: bytes | BinaryIO,
        content_type: str,
        metadata: dict[str, str],
        retain_until: datetime | None,
    ) -> StoredObject:
        """Write an object unless one of the same or a newer call version is stored; either way
        return what is stored. A newer call version (a call that reopened after its recording)
        becomes a new version of the object; versioning and object lock keep the old one.
        A file is sent from its start in parts (multipart past PART_SIZE), never read whole."""
        existing = self.find(key)
        if existing is not None and _call_version(existing) >= _call_version_of(metadata):
            return existing
        body = io.BytesIO(data) if isinstance(data, bytes) else data
        size = body.seek(0, io.SEEK_END)
        body.seek(0)
        with _translated(f"put {key}"):
            result = self.client.put_object(
                self.bucket, key, body, size, content_type=content_type,
                metadata=metadata,  # type: ignore[arg-type]
                retention=self._retention(retain_until), part_size=PART_SIZE,
            )
        return StoredObject(key, size, metadata.get("sha256"), result.version_id, dict(metadata))

    def replace(self, key: str, data: bytes, content_type: str,
                retain_until: datetime | None = None) -> None:
        """Write a derived object (a manifest) unless the same bytes are already there; in a
        versioned bucket an earlier different content stays as an older version, locked like
        the recordings it lists."""
        digest = hashlib.sha256(data).hexdigest()
        existing = self.find(key)
        if existing is not None and existing.sha256 == digest:
            return
        with _translated(f"put {key}"):
            self.client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), content_type=content_type,
                metadata={"sha256": digest}, retention=self._retention(retain_until),
            )

    def _retention(self, retain_until: datetime | None) -> Retention | None:
        """An explicit retention for a new version; the bucket's default covers the rest."""
        if retain_until is None or not self.object_lock:
            return None
        return Retention(self.retention_mode, retain_until)

    def read(self, key: str, version_id: str | None = None) -> bytes:
        with _translated(f"get {key}"):
            response = self.client.get_object(self.bucket, key, version_id=version_id)
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
