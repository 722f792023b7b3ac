"""Run one call-state worker: settings from CALLREC_* variables, logs to stderr, SIGTERM stops it
after the in-flight batch is folded, its sends flushed and its offsets committed (Faust's
worker shutdown)."""

from __future__ import annotations

import asyncio
import logging
import sys

import faust

from callrec.avro.topics import TopicSpec
from callrec.infra.topics import ensure_topics
from callrec.streams.app import build_app
from callrec.streams.settings import StreamsSettings

TICK_RETENTION_MS = 10 * 60 * 1000


def ensure_tick_topic(settings: StreamsSettings) -> None:
    """The tick topic must exist, co-partitioned with the call topics, before Faust subscribes."""
    spec = TopicSpec(settings.tick_topic, {"retention.ms": str(TICK_RETENTION_MS)})
    asyncio.run(ensure_topics(settings.kafka_bootstrap, settings.streams_partitions,
                              settings.streams_replication, topics=(spec,)))


def run_worker(settings: StreamsSettings) -> None:
    """Block running the worker until SIGTERM / SIGINT."""
    logging.basicConfig(stream=sys.stderr, level=settings.streams_log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.streams_data_dir.mkdir(parents=True, exist_ok=True)
    ensure_tick_topic(settings)
    asyncio.set_event_loop(asyncio.new_event_loop())
    app, _ = build_app(settings)
    worker = faust.Worker(app, loglevel=settings.streams_log_level, quiet=True,
                          redirect_stdouts=False, stdout=sys.stderr, stderr=sys.stderr)
    # Faust's progress spinner sets the root logger to DEBUG so that it can spin on every
    # record: every debug call of aiokafka then builds a LogRecord (~10% of the worker's CPU).
    worker.spinner = None
    worker.execute_from_commandline()


def main() -> None:
    run_worker(StreamsSettings())
