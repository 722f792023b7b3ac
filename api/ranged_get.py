"""Short ranged GETs of recordings on the event loop: what a seeking player asks for.

The minio SDK blocks a thread per request and signs every request anew (SigV4: hashing, date
formatting, URL building), and 100 threads woken at once fight the event loop for the GIL.
Here a URL is presigned once per object version (in a thread: the SDK may look the bucket's
region up) and reused until shortly before it expires; the GET goes over a bounded pool of
keep-alive connections and its response is parsed by httptools. Large bodies (a whole
recording, a download) stay on the SDK's streaming path in ``objects.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import httptools
import urllib3
from minio import Minio
from minio.error import MinioException

from callrec.api.errors import MissingObject, RecordingUnavailable

URL_LIFE = timedelta(hours=1)
RENEW_BEFORE_S = 600.0
"""A cached presigned URL is renewed when it has less than this left to live."""
CACHED_URLS = 4096
TIMEOUT_S = 30.0
MISSING_STATUS = 404


class _Response:
    """httptools callbacks: status comes from the parser, the body is collected here."""

    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.complete = False

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True)
class Target:
    """Where a presigned GET goes: the request target and the server (from the URL)."""

    path: str
    host: str
    port: int
    secure: bool
    netloc: str
    expires: float


class RangeReader:
    def __init__(self, client: Minio, connections: int) -> None:
        self.client = client
        self.connections = connections
        self._slots: asyncio.Semaphore | None = None
        self._waited_for = 0
        """Reads a client waits for now (not background ones)."""
        self._quiet: asyncio.Event | None = None
        self._idle: list[Connection] = []
        self._urls: OrderedDict[tuple[str, str, str | None], Target] = OrderedDict()

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()

    async def _target(self, bucket: str, key: str, version_id: str | None) -> Target:
        """The presigned GET of this object version, signed again when near its expiry."""
        cached = self._urls.get((bucket, key, version_id))
        if cached is not None and cached.expires - time.time() > RENEW_BEFORE_S:
            self._urls.move_to_end((bucket, key, version_id))
            return cached
        try:
            url = await asyncio.to_thread(self.client.presigned_get_object, bucket, key,
                                          URL_LIFE, version_id=version_id)
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as e:
            raise RecordingUnavailable(f"object store: presign {key} failed: {e}") from e
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        target = Target(f"{parts.path}?{parts.query}", parts.hostname or "",
                        parts.port or (443 if secure else 80), secure, parts.netloc,
                        time.time() + URL_LIFE.total_seconds())
        self._urls[(bucket, key, version_id)] = target
        while len(self._urls) > CACHED_URLS:
            self._urls.popitem(last=False)
        return target

    @contextlib.asynccontextmanager
    async def _connection(self, target: Target) -> AsyncIterator[tuple[Connection, bool]]:
        """A pooled keep-alive connection (one store per client: every URL has the same
        origin) and whether it was reused; an exception or a server that ends the connection
        keeps it out of the pool."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.connections)
        async with self._slots:
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await asyncio.open_connection(
                target.host, target.port, ssl=target.secure or None)
            try:
                yield conn, reused
            except BaseException:
                conn[1].close()
                raise
            if conn[1].is_closing() or conn[0].at_eof():
                conn[1].close()
            else:
                self._idle.append(conn)

    async def quiet(self) -> None:
        """Until no client waits on a read: background work (cache fills) gives way to a
        burst of seeks rather than competing with it for S3 and the CPU."""
        if self._quiet is None:
            self._quiet = asyncio.Event()
            self._quiet.set()
        await self._quiet.wait()

    async def read(self, bucket: str, key: str, version_id: str | None, start: int,
                   length: int, background: bool = False) -> bytes:
        """Bytes ``start .. start+length-1`` of one object version; raises before any byte
        is returned (RecordingUnavailable, or MissingObject for a 404)."""
        if background:
            return await self._read(bucket, key, version_id, start, length)
        if self._quiet is None:
            self._quiet = asyncio.Event()
        self._waited_for += 1
        self._quiet.clear()
        try:
            return await self._read(bucket, key, version_id, start, length)
        finally:
            self._waited_for -= 1
            if not self._waited_for:
                self._quiet.set()

    async def _read(self, bucket: str, key: str, version_id: str | None, start: int,
                    length: int) -> bytes:
        target = await self._target(bucket, key, version_id)
        request = (f"GET {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\n"
                   f"Range: bytes={start}-{start + length - 1}\r\n\r\n").encode()
        try:
            async with asyncio.timeout(TIMEOUT_S):
                for attempt in (1, 2):
                    try:
                        return await self._exchange(target, request, key, length)
                    except _StaleConnection:
                        self.close()  # its idle fellows are as old: start afresh
                        if attempt == 2:
                            raise
        except (OSError, TimeoutError, httptools.HttpParserError, _StaleConnection) as e:
            raise RecordingUnavailable(f"object store: get {key} failed: {e!r}") from e
        raise AssertionError("unreachable")

    async def _exchange(self, target: Target, request: bytes, key: str, length: int
                        ) -> bytes:
        async with self._connection(target) as ((reader, writer), reused):
            writer.write(request)
            response = _Response()
            parser = httptools.HttpResponseParser(response)
            received = False
            while not response.complete:
                try:
                    data = await reader.read(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    if reused and not received:  # the server closed an idle connection
                        raise _StaleConnection("connection closed before a response")
                    raise ConnectionResetError("S3 closed the connection mid-response")
                received = True
                parser.feed_data(data)
            if not parser.should_keep_alive():
                writer.close()
        code, body = parser.get_status_code(), b"".join(response.body)
        if code == MISSING_STATUS:
            raise MissingObject(f"get {key}: not in the object store")
        if code not in (200, 206) or len(body) != length:
            raise RecordingUnavailable(f"object store: get {key} answered {code} with "
                                       f"{len(body)} bytes for {length}: {body[:200]!r}")
        return body


class _StaleConnection(ConnectionError):
    """A pooled connection the server had closed: the request is sent again, once."""
