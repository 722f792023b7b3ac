"""One REST replica: the read-model consumer, the audit publisher and the HTTP server in one
event loop, stopped together on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

import anyio.to_thread
import uvicorn

from callrec.api.app import create_app
from callrec.api.deps import AppState
from callrec.api.live import LiveHub
from callrec.api.objects import ObjectReader, connect
from callrec.api.readmodel import ReadModel
from callrec.api.recording_cache import RecordingCache
from callrec.api.settings import ApiSettings
from callrec.api.signing import load_or_create_key
from callrec.api.tokens import TokenStore
from callrec.eventlog import EventPublisher

log = logging.getLogger(__name__)
KEEP_ALIVE_S = 30
"""Idle keep-alive connections live this long: a player asks for its next range every few
seconds, and uvicorn's 5 s default closes connections a client is about to reuse."""


def build_state(settings: ApiSettings, model: ReadModel, publisher: EventPublisher,
                hub: LiveHub) -> AppState:
    client = connect(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key,
                     settings.s3_secure, settings.api_io_threads)
    return AppState(
        settings=settings, tokens=TokenStore(settings.api_tokens_file),
        signing_key=load_or_create_key(settings.api_signing_key_file),
        reader=ObjectReader(client, settings.api_s3_connections, RecordingCache(
            settings.api_cache_bytes, settings.api_cache_object_max_bytes,
            settings.api_cache_max_age_s)),
        publisher=publisher,
        progress=model.progress, hub=hub, db_path=settings.db_path,
    )


async def serve(settings: ApiSettings) -> None:
    # Object-store reads block a thread each until S3 answers: with the default pool (6 threads
    # on 2 cores) 100 concurrent streams would queue behind each other.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(settings.api_io_threads, thread_name_prefix="api-io"))
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_io_threads
    hub = LiveHub()
    model = ReadModel(settings.kafka_bootstrap, settings.db_path,
                      f"callrec-api-{settings.api_replica_id}", hub.publish)
    publisher = EventPublisher(settings.kafka_bootstrap, f"callrec-api-{settings.api_replica_id}")
    await publisher.start()
    state = build_state(settings, model, publisher, hub)
    server = uvicorn.Server(uvicorn.Config(
        create_app(state), host=settings.api_host, port=settings.api_port, log_level="warning",
        proxy_headers=False, http="httptools", timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=3,
    ))
    stop = asyncio.Event()
    consumer = asyncio.create_task(model.run(stop))
    log.info("api %s on http://%s:%d", settings.api_replica_id, settings.api_host,
             settings.api_port)
    try:
        await server.serve()
    finally:
        stop.set()
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        state.reader.ranged.close()
        await publisher.stop()
