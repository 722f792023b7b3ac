"""`callrec streams replay`: rebuild every call from the start of the topics and compare.

Reads rec.lifecycle.v1, rec.audio.v1 and rec.recorders.v1 from their beginning up to their end
at the start of the run, folds them with the very functions the worker runs (rebuild.py), reads
the live rec.calls.v1 up to its end, and reports every call that differs. Fields that depend on
how often a snapshot was published (event_id, version, producer_id) are not compared, and a call
still ACTIVE is compared without its legs and event time (the worker throttles audio progress).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from callrec.avro import codec
from callrec.avro.errors import ContractError
from callrec.avro.events import CallRecord, CallStatus
from callrec.avro.topics import AUDIO, CALLS, LIFECYCLE, RECORDERS
from callrec.eventlog import (
    EventLogError,
    kafka_errors,
    read_to_end,
    reader,
    topic_partitions,
)
from callrec.streams.errors import StreamsUnavailable
from callrec.streams.model import SourcePosition
from callrec.streams.projection import to_record
from callrec.streams.rebuild import Positioned, rebuild
from callrec.streams.settings import StreamsSettings

VOLATILE = {"event_id", "version", "producer_id", "reopened"}
"""Fields a rebuild need not reproduce: the record's identity, and ``reopened``, which counts
verdicts published and withdrawn and so depends on when the live worker ticked (README,
"Reopening"); every other field of a settled call must agree."""
ACTIVE_VOLATILE = VOLATILE | {"event_time", "legs"}


@dataclass
class ReplayReport:
    compared: int = 0
    skipped_unsettled: int = 0
    undecodable: int = 0
    rejected: int = 0
    differences: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"compared {self.compared} calls, {len(self.differences)} differ; "
                f"{self.skipped_unsettled} still settling; {self.undecodable} undecodable and "
                f"{self.rejected} refused events (dead-lettered by the worker too)")


def replay_and_compare(
    settings: StreamsSettings,
    settle_s: float = 0.0,
    only: Callable[[str], bool] | None = None,
) -> ReplayReport:
    """Rebuild and compare; ``only`` limits the comparison to some call keys."""
    return asyncio.run(_replay(settings, settle_s, only or (lambda key: True)))


async def _replay(
    settings: StreamsSettings, settle_s: float, only: Callable[[str], bool]
) -> ReplayReport:
    report = ReplayReport()
    history: list[Positioned] = []
    live: dict[str, CallRecord] = {}
    topics = (LIFECYCLE.name, AUDIO.name, RECORDERS.name, CALLS.name)
    for topic, partition, offset, value in await read_all(settings.kafka_bootstrap, topics):
        try:
            event = codec.decode(value)
        except ContractError:
            report.undecodable += 1
            continue
        if isinstance(event, CallRecord):
            if only(event.call_key):
                known = live.get(event.call_key)
                if known is None or event.version >= known.version:
                    live[event.call_key] = event
        elif topic == RECORDERS.name or only(getattr(event, "call_key", "")):
            history.append((event, SourcePosition(topic, partition, offset)))
    now = time.time_ns() // 1000
    rebuilt = rebuild(history, settings.rules(), end=now, tick_s=settings.streams_tick_s)
    report.rejected = len(rebuilt.rejected)
    settled_before = now - int(settle_s * 1_000_000)
    for key in sorted(set(rebuilt.calls) | set(live)):
        state = rebuilt.calls.get(key)
        if state is not None and not state.has_start and not state.is_terminal:
            continue  # the worker publishes nothing before a LegStarted or a verdict
        if state is not None and (state.newest_fact_at or 0) > settled_before:
            report.skipped_unsettled += 1
            continue
        report.compared += 1
        record = to_record(state, "replay") if state is not None else None
        difference = compare(key, record, live.get(key))
        if difference:
            report.differences.append(difference)
    return report


def compare(key: str, rebuilt: CallRecord | None, live: CallRecord | None) -> str | None:
    """One line saying how the rebuilt and the live record of a call differ, or None."""
    if rebuilt is None or live is None:
        return f"{key}: {'missing from the rebuild' if rebuilt is None else 'never published'}"
    skip = ACTIVE_VOLATILE if CallStatus.ACTIVE in (rebuilt.status, live.status) else VOLATILE
    mine, theirs = rebuilt.model_dump(exclude=skip), live.model_dump(exclude=skip)
    fields = sorted(name for name in mine if mine[name] != theirs.get(name))
    if not fields:
        return None
    details = "; ".join(f"{name}: rebuilt {_short(mine[name])} live {_short(theirs.get(name))}"
                        for name in fields)
    return f"{key}: {details}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 200 else text[:197] + "..."


async def read_all(
    bootstrap: str, topics: tuple[str, ...]
) -> list[tuple[str, int, int, bytes]]:
    """Every record of ``topics`` from the beginning to their end as of now."""
    try:
        async with reader(bootstrap, "callrec-streams-replay") as consumer:
            tps = await topic_partitions(bootstrap, topics)
            consumer.assign(tps)
            with kafka_errors("replay: seek"):
                await consumer.seek_to_beginning(*tps)
            return [(r.topic, r.partition, r.offset, r.value or b"")
                    async for r in read_to_end(consumer, tps)]
    except EventLogError as e:
        raise StreamsUnavailable(f"replay cannot read Kafka: {e}") from e
