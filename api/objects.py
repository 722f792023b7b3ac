"""The object-store adapter of the REST server (minio SDK, as the mixer's store uses).

Reads only: a byte range of one version of a recording, a whole object for hashing, the daily
manifest. Library failures become RecordingUnavailable at this boundary.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from callrec.api.errors import MissingObject, RecordingUnavailable
from callrec.api.ranged_get import RangeReader
from callrec.sinks.encode import FORMATS
from callrec.sinks.store import MISSING_CODES

CHUNK = 64 * 1024


def content_type(fmt: str) -> str:
    found = FORMATS.get(fmt.lower())
    return found.content_type if found else "application/octet-stream"


def _translate(what: str, error: Exception) -> RecordingUnavailable:
    if isinstance(error, S3Error) and error.code in MISSING_CODES:
        return MissingObject(f"{what}: not in the object store")
    return RecordingUnavailable(f"object store: {what} failed: {error}")


def connect(endpoint: str, access_key: str, secret_key: str, secure: bool,
            connections: int) -> Minio:
    """A client with a connection pool as large as the streams served at once (urllib3 keeps
    10 per host by default and would reconnect for every stream beyond that)."""
    http = urllib3.PoolManager(
        maxsize=connections, block=False,
        timeout=urllib3.Timeout(connect=3, read=30),
        retries=urllib3.Retry(total=1, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    return Minio(endpoint, access_key, secret_key, secure=secure, http_client=http)


class ObjectReader:
    def __init__(self, client: Minio, connections: int = 16) -> None:
        self.client = client
        self.ranged = RangeReader(client, connections)
        """Short ranges on the event loop, with their own pool of ``connections``."""

    def open_range(self, bucket: str, key: str, version_id: str | None, start: int,
                   length: int) -> Any:
        """Start a ranged GET (the response is read by ``stream``); raises before any byte."""
        try:
            return self.client.get_object(bucket, key, offset=start, length=length,
                                          version_id=version_id)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as e:
            raise _translate(f"get {key}", e) from e

    @staticmethod
    def stream(response: Any) -> Iterator[bytes]:
        """Body chunks of an opened response. A body read to its end leaves its connection
        open and back in the pool (``close()`` would shut the socket, so every request paid a
        new TCP connection to S3); one abandoned half-way is closed, as its unread rest
        would poison the next request on that connection."""
        done = False
        try:
            yield from response.stream(CHUNK)
            done = True
        finally:
            if not done:
                response.close()
            response.release_conn()

    @contextlib.contextmanager
    def whole(self, bucket: str, key: str, version_id: str | None) -> Iterator[Any]:
        """The whole object as a file-like ``read(n)``, read as it arrives (a decoder's
        input: memory stays bounded however long the recording)."""
        response = self.open_range(bucket, key, version_id, 0, 0)
        try:
            yield response
        finally:
            response.close()
            response.release_conn()

    def sha256(self, bucket: str, key: str, version_id: str | None) -> tuple[str, int]:
        """Hash the stored bytes as they are now: the verify endpoint's first check."""
        digest = hashlib.sha256()
        size = 0
        for chunk in self.stream(self.open_range(bucket, key, version_id, 0, 0)):
            digest.update(chunk)
            size += len(chunk)
        return digest.hexdigest(), size

    def read(self, bucket: str, key: str) -> bytes | None:
        """A whole small object (a manifest, a key), None if it is not there."""
        try:
            response = self.client.get_object(bucket, key)
        except S3Error as e:
            if e.code in MISSING_CODES:
                return None
            raise _translate(f"get {key}", e) from e
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as e:
            raise _translate(f"get {key}", e) from e
        return b"".join(self.stream(response))
