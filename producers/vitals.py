"""The recorder process's upkeep: its health, heartbeats, status file, and draining at the end.

``assess`` is the pure rule (what the recorder's state means for new calls); ``Vitals`` is the
loop around the leg runtime (``Recorder``): it ticks the legs, judges health every tick (the SIP
thread reads ``health``, an immutable value replaced whole, to answer OPTIONS and INVITEs),
sends a heartbeat and rewrites the status file every interval, gives the spool its chance to
move what a full disk made it hold in memory back to disk, and drains on stop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callrec.avro.events import LegEndReason, RecorderHealth, RecorderHeartbeat
from callrec.health import write_health

if TYPE_CHECKING:
    from callrec.producers.recorder import Recorder

log = logging.getLogger(__name__)
TICK_S = 0.05
SPOOL_FAILURE_MEMORY_S = 10.0  # a lost event keeps new calls away this long


@dataclass(frozen=True)
class Health:
    state: RecorderHealth
    reasons: tuple[str, ...]

    @property
    def accepting(self) -> bool:
        return self.state is RecorderHealth.HEALTHY


STARTING = Health(RecorderHealth.UNAVAILABLE, ("starting",))


@dataclass(frozen=True)
class Load:
    """What health is judged on, read from the runtime at one instant."""

    draining: bool
    kafka_reachable: bool
    spool_bytes: int
    spool_unhealthy_bytes: int
    live_legs: int
    max_legs: int
    lost_recently: bool
    disk_problem: str | None
    """Why the spool's disk refuses writes (``disk full``, ``disk failing``), or None."""


def assess(load: Load) -> Health:
    """Healthy only when a new call would be recorded safely; else every reason, for the 503."""
    if load.draining:
        return Health(RecorderHealth.DRAINING, ("draining",))
    reasons = []
    if not load.kafka_reachable:
        reasons.append("Kafka unreachable")
    if load.disk_problem is not None:
        reasons.append(load.disk_problem)
    if load.spool_bytes > load.spool_unhealthy_bytes:
        reasons.append("spool above its threshold")
    if load.live_legs >= load.max_legs:
        reasons.append("at capacity")
    if load.lost_recently:
        reasons.append("spool full or not writable")
    if reasons:
        return Health(RecorderHealth.UNAVAILABLE, tuple(reasons))
    return Health(RecorderHealth.HEALTHY, ())


def write_status(path: Path, state: str, **detail: Any) -> bool:
    """The health record, atomically; on a full disk (no room for the new copy) overwritten in
    place instead, which needs no new block (a reader may catch it half-written and retries).
    False when neither worked: the heartbeat on Kafka still says it."""
    try:
        write_health(path, "recorder", state, **detail)
        return True
    except OSError as e:
        first = e
    body = json.dumps({"component": "recorder", "pid": os.getpid(), "at": time.time(),
                       "state": state, **detail}, sort_keys=True, default=str).encode()  # fmt: skip
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, body)
            os.ftruncate(fd, len(body))
        finally:
            os.close(fd)
        return True
    except OSError as e:
        log.warning("cannot write %s: %s, nor in place: %s", path, first, e)
        return False


class Vitals:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.settings = recorder.settings
        self.health = STARTING
        self.draining = False
        self._heartbeat_seq = 0
        self._disk_problem: str | None = None

    def begin_drain(self) -> None:
        """Thread-safe: refuse new calls, let the current ones finish."""
        self.draining = True

    def _assess(self) -> Health:
        r, spool = self.recorder, self.recorder.outbox.spool
        return assess(Load(
            draining=self.draining,
            kafka_reachable=r.outbox.kafka_reachable,
            spool_bytes=spool.pending_bytes,
            spool_unhealthy_bytes=self.settings.spool_unhealthy_bytes,
            live_legs=len(r.legs),
            max_legs=self.settings.max_legs,
            lost_recently=time.monotonic() - r.last_loss_at < SPOOL_FAILURE_MEMORY_S,
            disk_problem=spool.disk_problem,
        ))  # fmt: skip

    def _disk(self) -> None:
        """Give the spool its chance to put back on disk what it holds in memory."""
        spool = self.recorder.outbox.spool
        spool.retry_disk()
        if spool.disk_problem != self._disk_problem:
            if spool.disk_problem is None:
                log.warning("the spool's disk takes writes again; taking calls")
            else:
                log.error("%s: no new calls; live legs held in memory (%d of %d bytes)",
                          spool.disk_problem, spool.held_bytes, spool.memory_bytes)  # fmt: skip
            self._disk_problem = spool.disk_problem

    def _heartbeat(self) -> RecorderHeartbeat:
        r, health, spool = self.recorder, self.health, self.recorder.outbox.spool
        beat = RecorderHeartbeat(
            producer_id=r.identity.recorder_id,
            recorder_id=r.identity.recorder_id,
            incarnation=r.identity.incarnation,
            heartbeat_seq=self._heartbeat_seq,
            interval_ms=self.settings.heartbeat_interval_ms,
            health=health.state,
            health_reasons=list(health.reasons),
            active_legs=len(r.legs),
            active_leg_ids=sorted(r.legs),
            max_legs=self.settings.max_legs,
            spool_bytes=spool.pending_bytes,
            spool_oldest_age_ms=spool.oldest_pending_age_ms(),
            spool_refuse_bytes=self.settings.spool_unhealthy_bytes,
            spool_max_bytes=self.settings.spool_max_bytes,
            sip_address=f"{self.settings.sip_host}:{self.settings.sip_port}",
            rtp_dropped=dict(r.rtp_dropped),
        )
        self._heartbeat_seq += 1
        return beat

    def _write_status(self) -> None:
        """The stack's health probe: a JSON file rewritten every heartbeat (stale = dead)."""
        r, state, spool = self.recorder, self.health.state, self.recorder.outbox.spool
        write_status(
            self.settings.data_dir / "status.json",
            "running" if state == RecorderHealth.HEALTHY else state.value.lower(),
            recorder_id=r.identity.recorder_id,
            incarnation=r.identity.incarnation,
            health=state.value,
            reasons=list(self.health.reasons),
            active_legs=len(r.legs),
            spool_bytes=spool.pending_bytes,
            spool_oldest_age_ms=spool.oldest_pending_age_ms(),
            spool_backlog_events=r.outbox.backlog,
            spool_held_in_memory_bytes=spool.held_bytes,
            disk_problem=spool.disk_problem,
            published_events=r.outbox.published,
            lost_events=r.lost_events,
            rejected_by_kafka=r.outbox.rejected,
            rtp_dropped=dict(r.rtp_dropped),
            kafka_reachable=r.outbox.kafka_reachable,
            sip=r.sip.stats(),
            threads={t.name: t.native_id for t in threading.enumerate()},
        )

    async def run(self, stop: asyncio.Event, drain_timeout_s: float) -> None:
        """Record until ``stop``; then drain: wait for calls, end the rest, flush the spool."""
        r = self.recorder
        r.outbox.start()
        next_beat = time.monotonic()
        interval = self.settings.heartbeat_interval_ms / 1000
        drain_deadline: float | None = None
        while True:
            r.tick(time.time_ns() // 1000)
            self.health = self._assess()
            now = time.monotonic()
            if now >= next_beat:
                self._disk()
                self._write_status()  # before the beat, whose own event would read as backlog
                r.emit(self._heartbeat())
                next_beat = now + interval
            if stop.is_set() and drain_deadline is None:
                self.begin_drain()
                drain_deadline = now + drain_timeout_s
                log.info("draining: %d legs, up to %.0f s", len(r.legs), drain_timeout_s)
            if drain_deadline is not None and (not r.legs or now >= drain_deadline):
                break
            await asyncio.sleep(TICK_S)
        r.end_all(LegEndReason.RECORDER_SHUTDOWN, time.time_ns() // 1000)
        self._disk()
        r.emit(self._heartbeat())
        flushed = await r.outbox.flush(timeout_s=self.settings.flush_timeout_s)
        if not flushed:
            log.warning("Kafka took not all; %d events stay spooled", r.outbox.backlog)
        if r.outbox.spool.held_bytes:
            log.error("%s: %d bytes held in memory are lost", r.outbox.spool.disk_problem,
                      r.outbox.spool.held_bytes)  # fmt: skip
        self._write_status()
        await r.outbox.close()
