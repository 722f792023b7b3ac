"""The object-store adapter of the REST server (minio SDK, as the mixer's store uses).

Reads only: a byte range of one version of a recording (from the verified in-memory copy when
``recording_cache`` holds it, else from the store, filling the cache behind), a whole object for
hashing, the daily manifest. Library failures become RecordingUnavailable at this boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from callrec.api.errors import MissingObject, RecordingUnavailable
from callrec.api.ranged_get import RangeReader
from callrec.api.recording_cache import Identity, RecordingCache
from callrec.sinks.encode import FORMATS
from callrec.sinks.store import MISSING_CODES

CHUNK = 64 * 1024
FILLS_AT_ONCE = 4
"""Whole-object reads filling the cache at once: a burst of first plays must not turn into a
burst of whole-object reads competing with the ranges the players wait for."""
log = logging.getLogger(__name__)


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
    def __init__(self, client: Minio, connections: int = 16,
                 cache: RecordingCache | None = None) -> None:
        self.client = client
        self.ranged = RangeReader(client, connections)
        """Short ranges on the event loop, with their own pool of ``connections``."""
        self.cache = cache if cache is not None else RecordingCache(0, 0, 0)
        self._fill_slots: asyncio.Semaphore | None = None
        self._filling: dict[Identity, asyncio.Task[None]] = {}

    def cached(self, ident: Identity, start: int, length: int) -> memoryview | None:
        """Bytes ``start .. start+length-1`` of a verified cached copy (no copy made), or
        None: then the caller reads the store and may ``fill_later``."""
        body = self.cache.get(ident)
        return None if body is None else memoryview(body)[start:start + length]

    def fill_later(self, ident: Identity) -> None:
        """Read the whole recording into the cache in the background (once per identity, a
        few at a time, when no client waits on a store read), for this player's next ranges
        and other listeners of the same call."""
        if not self.cache.admits(ident) or ident in self.cache or ident in self._filling:
            return
        self._filling[ident] = asyncio.create_task(self._fill(ident))

    async def _fill(self, ident: Identity) -> None:
        if self._fill_slots is None:
            self._fill_slots = asyncio.Semaphore(FILLS_AT_ONCE)
        try:
            async with self._fill_slots:
                await self.ranged.quiet()
                body = await self.ranged.read(ident.bucket, ident.object_key,
                                              ident.version_id, 0, ident.size, background=True)
                digest = await asyncio.to_thread(lambda: hashlib.sha256(body).hexdigest())
            if not self.cache.put(ident, body, digest):
                log.warning("not cached: %s (version %s) does not match its archived sha256",
                            ident.object_key, ident.version_id)
        except RecordingUnavailable as e:  # best effort: the next miss tries again
            log.info("cache fill of %s failed: %s", ident.object_key, e)
        finally:
            del self._filling[ident]

    async def drain_fills(self) -> None:
        """Wait for the fills under way (stopping, and tests)."""
        await asyncio.gather(*self._filling.values(), return_exceptions=True)

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
