"""Wire the mixer process: settings -> Kafka publisher, object store, worker; SIGTERM stops it.

On SIGTERM the worker stops reading, finishes the calls it is archiving, commits and exits 0;
whatever was still open is re-read from Kafka by the next worker.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from callrec.eventlog import EventLogUnavailable, EventPublisher
from callrec.sinks.archive import Archiver
from callrec.sinks.errors import ManifestKeyError, ObjectLockMissing, StoreUnavailable
from callrec.sinks.loop import MixerWorker
from callrec.sinks.manifests import ManifestWriter
from callrec.sinks.settings import MixerSettings
from callrec.sinks.store import RecordingStore, connect

log = logging.getLogger(__name__)
STARTUP_RETRY_S = 2.0


def store_from(settings: MixerSettings) -> RecordingStore:
    client = connect(
        settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, settings.s3_secure
    )
    return RecordingStore(client, settings.s3_bucket, settings.mixer_retention_mode)


async def main(settings: MixerSettings) -> None:
    """The process: serve until SIGTERM or SIGINT; a bucket without the required object lock or
    a missing signing key ends it at once with the reason (exit 2), not in a retry loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve(settings, stop)
    except (ObjectLockMissing, ManifestKeyError) as e:
        log.error("mixer not started: %s", e)
        raise SystemExit(2) from None


async def serve(settings: MixerSettings, stop: asyncio.Event) -> None:
    """Run the worker (and the daily manifest) until ``stop`` is set."""
    store = store_from(settings)
    manifests = ManifestWriter(store, settings.mixer_manifest_key, settings.mixer_retention_days)
    while not stop.is_set():
        try:
            await asyncio.to_thread(store.ensure_bucket, settings.lock)
            break
        except StoreUnavailable as e:
            log.warning("%s; retrying in %.0f s", e, STARTUP_RETRY_S)
            await asyncio.sleep(STARTUP_RETRY_S)
    publisher = EventPublisher(settings.kafka_bootstrap, settings.mixer_producer_id)
    while True:
        try:
            await publisher.start()
            break
        except EventLogUnavailable as e:
            if stop.is_set():
                return
            log.warning("%s; retrying in %.0f s", e, STARTUP_RETRY_S)
            await asyncio.sleep(STARTUP_RETRY_S)
    worker = MixerWorker(settings, publisher, Archiver(settings, store, publisher, manifests))
    daily = asyncio.create_task(manifests.run_daily(settings.mixer_manifest_hour_utc, stop))
    try:
        await worker.run(stop)
    finally:
        stop.set()
        await daily
        await publisher.stop()
    log.info("mixer stopped")
