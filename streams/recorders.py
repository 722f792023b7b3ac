"""Recorder liveness folded from heartbeats: who is alive, in which incarnation, since when.

Heartbeats are keyed by recorder id, so they sit on one partition of rec.recorders.v1, while the
calls a recorder owns are spread over every partition. So each worker folds ALL heartbeats into
its own view (recorder_feed.py reads the whole topic outside the consumer group).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType

from callrec.avro.events import RecorderHeartbeat
from callrec.streams.fold import micros
from callrec.streams.rules import Rules


def iso(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, UTC).isoformat(timespec="milliseconds")


STRETCH_GAP_INTERVALS = 3
STRETCH_GAP_MIN_US = 3_000_000
"""Heartbeats further apart than this (3 intervals, at least 3 s) start a new stretch."""


@dataclass(frozen=True, slots=True)
class RecorderSeen:
    """The newest heartbeat of a recorder (by event time)."""

    incarnation: str
    at: int
    heartbeat_seq: int
    interval_ms: int
    health: str
    since: int = 0
    """First heartbeat of the recorder's current unbroken stretch: when it came back after a
    stall or restart (0 for the stretch of the first heartbeat known). Media silence before it
    was the recorder's, not the caller's."""


@dataclass(frozen=True, slots=True)
class RecordersView:
    seen: Mapping[str, RecorderSeen] = field(default_factory=lambda: MappingProxyType({}))
    ready: bool = False
    """False until the feed has read up to the topic's end: no verdict on half-known liveness."""
    read_until: int | None = None
    """Every heartbeat appended before this time has been read (None: all of them, as in a
    replay). Silence after it may be Kafka's (a broker outage, a lagging feed; the recorders
    spool their heartbeats meanwhile), not the recorder's, so it is not held against them."""
    read_since: int | None = None
    """Start of the feed's current stretch of uninterrupted reading. After an outage the
    recorders need time to reconnect and flush their spooled heartbeats: silence counts from
    here at the earliest."""


def observe(view: RecordersView, heartbeat: RecorderHeartbeat) -> RecordersView:
    """Fold one heartbeat; an older one (reordered, duplicated) changes nothing."""
    known = view.seen.get(heartbeat.recorder_id)
    seen = RecorderSeen(
        incarnation=heartbeat.incarnation,
        at=micros(heartbeat.event_time),
        heartbeat_seq=heartbeat.heartbeat_seq,
        interval_ms=heartbeat.interval_ms,
        health=heartbeat.health.value,
        since=0 if known is None else micros(heartbeat.event_time),
    )
    if known is not None and (known.at, known.heartbeat_seq) >= (seen.at, seen.heartbeat_seq):
        return view
    if known is not None and known.incarnation == seen.incarnation:
        gap_limit = max(STRETCH_GAP_INTERVALS * seen.interval_ms * 1000, STRETCH_GAP_MIN_US)
        if seen.at - known.at <= gap_limit:
            seen = replace(seen, since=known.since)
    updated = dict(view.seen)
    updated[heartbeat.recorder_id] = seen
    return replace(view, seen=MappingProxyType(updated))


def mark_ready(view: RecordersView) -> RecordersView:
    return replace(view, ready=True)


def mark_read_until(view: RecordersView, at: int, since: int | None = None) -> RecordersView:
    """The feed had read everything appended before ``at``, uninterrupted since ``since``."""
    if view.read_until is not None and view.read_until >= at and since == view.read_since:
        return view
    return replace(view, read_until=max(at, view.read_until or 0),
                   read_since=since if since is not None else view.read_since)


def silent_since(view: RecordersView, last_heard: int) -> int:
    return max(last_heard, view.read_since or 0)


def heard_until(view: RecordersView, now: int) -> int:
    """The latest time at which a recorder's silence is known to be its own."""
    return now if view.read_until is None else min(now, view.read_until)


def up_gauges(view: RecordersView, now: int, rules: Rules) -> dict[str, int]:
    """1 per recorder heard from within recorder_lost_after_s, else 0 (a gap in recording)."""
    if not view.ready:
        return {}
    limit = rules.us(rules.recorder_lost_after_s)
    now = heard_until(view, now)
    return {rid: int(now - silent_since(view, seen.at) <= limit)
            for rid, seen in view.seen.items()}


def back_since(view: RecordersView, recorder_id: str | None) -> int:
    """When the recorder's current stretch of heartbeats began (0: unknown recorder)."""
    seen = view.seen.get(recorder_id) if recorder_id is not None else None
    return seen.since if seen is not None else 0


def lost_reason(
    view: RecordersView,
    recorder_id: str,
    incarnation: str,
    leg_started_at: int,
    now: int,
    rules: Rules,
) -> tuple[str, int] | None:
    """Why a leg's recorder can no longer be recording it and since when, or None while it may
    be. The time orders this verdict against the call's other rules (verdict.judge)."""
    if not view.ready:
        return None
    now = heard_until(view, now)
    seen = view.seen.get(recorder_id)
    if seen is None:
        lost_at = silent_since(view, leg_started_at) + rules.us(rules.recorder_lost_after_s) + 1
        if now >= lost_at:
            return f"recorder {recorder_id}: no heartbeat since the leg started", lost_at
        return None
    if seen.incarnation != incarnation and seen.at >= leg_started_at:
        why = f"recorder {recorder_id} restarted (incarnation {incarnation} -> {seen.incarnation})"
        return why, max(seen.since or seen.at, leg_started_at)
    lost_after = max(rules.us(rules.recorder_lost_after_s), 2 * seen.interval_ms * 1000)
    lost_at = silent_since(view, max(seen.at, leg_started_at)) + lost_after + 1
    if now >= lost_at:
        return f"recorder {recorder_id}: heartbeats stopped (last at {iso(seen.at)})", lost_at
    return None
