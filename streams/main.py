"""Run one call-state worker: settings from CALLREC_* variables, logs to stderr; SIGTERM stops it
after the batch in flight is folded, its sends acknowledged and its offsets committed, and it
leaves the group so that the others take its partitions at once."""

from __future__ import annotations

import asyncio
import gc
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
GC_THRESHOLDS = (20_000, 20, 20)
"""Python's default (700, 10, 10) ran the cyclic collector ~120 times a second in the worker."""


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


def quiet_collector() -> None:
    """Run the cyclic garbage collector less often, and never over what was loaded at start.

    The fold makes a few objects per event (the call, its leg, the leg's tally) and drops the
    previous ones by reference counting; none of it makes cycles. With the default thresholds
    the collector still ran ~120 times a second, traversing the batch in flight and every
    module each time it reached the oldest generation: 8% of the worker's CPU (gc.callbacks,
    bench/streams_fold.py), 0.6% with these. The bench runs its in-process figures (the
    ceilings) under the same collector.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_worker(settings: StreamsSettings) -> None:
    """Block running the worker until SIGTERM / SIGINT."""
    logging.basicConfig(stream=sys.stderr, level=settings.streams_log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.streams_data_dir.mkdir(parents=True, exist_ok=True)
    quiet_collector()
    # uvloop: the event loop's own share of the worker (epoll, socket writes, callbacks) was
    # ~15% with the standard loop (py-spy, bench/streams_fold.py).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings))


def main() -> None:
    run_worker(StreamsSettings())
