"""Run one call-state worker: settings from CALLREC_* variables, logs to stderr; SIGTERM stops it
after the batch in flight is folded, its sends acknowledged and its offsets committed, and it
leaves the group so that the others take its partitions at once."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop

from callrec.avro.topics import TopicSpec
from callrec.infra.topics import ensure_topics
from callrec.streams.changelog import changelog_spec
from callrec.streams.loop import CallStateWorker
from callrec.streams.settings import StreamsSettings

TICK_RETENTION_MS = 10 * 60 * 1000


async def ensure_worker_topics(settings: StreamsSettings) -> None:
    """The tick topic and the changelog, co-partitioned with the call topics."""
    ticks = TopicSpec(settings.tick_topic, {"retention.ms": str(TICK_RETENTION_MS)})
    await ensure_topics(settings.kafka_bootstrap, settings.streams_partitions,
                        settings.streams_replication,
                        topics=(ticks, changelog_spec(settings.changelog_topic)))


async def serve(settings: StreamsSettings) -> None:
    await ensure_worker_topics(settings)
    worker = CallStateWorker(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    await worker.run()


def run_worker(settings: StreamsSettings) -> None:
    """Block running the worker until SIGTERM / SIGINT."""
    logging.basicConfig(stream=sys.stderr, level=settings.streams_log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.streams_data_dir.mkdir(parents=True, exist_ok=True)
    # uvloop: the event loop's own share of the worker (epoll, socket writes, callbacks) was
    # ~15% with the standard loop (py-spy, bench/streams_fold.py).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings))


def main() -> None:
    run_worker(StreamsSettings())
