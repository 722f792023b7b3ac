"""The recorder's asyncio side: live legs, their RTP sockets and chunkers, heartbeats, health.

It receives what the SIP thread reports (``submit``, thread-safe), owns every RTP socket, and
emits every event through the spool-first outbox. The SIP thread reads ``health`` (an immutable
value replaced whole) to answer OPTIONS and INVITEs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from callrec.avro.events import (
    AudioChunk,
    Event,
    LegEndReason,
    RecorderHealth,
    RecorderHeartbeat,
)
from callrec.health import write_health
from callrec.producers.chunk_encoding import AUDIO_TOPIC, encode_chunk
from callrec.producers.chunker import ClosedChunk, LegChunker
from callrec.producers.errors import BadRtp, SpoolFull
from callrec.producers.leg import (
    LegState,
    RecorderIdentity,
    end_leg,
    negotiate,
    open_leg,
    start_leg,
)
from callrec.producers.media import PortPool, read_stamped
from callrec.producers.outbox import Outbox
from callrec.producers.rtp import parse_rtp
from callrec.producers.rtp_gate import Address, RtpGate
from callrec.producers.settings import RecorderSettings
from callrec.producers.sip_facts import DialogAccepted, DialogClosed, MediaNegotiated, SipFact

log = logging.getLogger(__name__)
TICK_S = 0.05
EARLY_PACKETS = 100  # RTP that beats the ACK: kept until the codec is known (~2 s)
SPOOL_FAILURE_MEMORY_S = 10.0  # a failed spool write keeps new calls away this long
DRAIN_LIMIT = 2000  # a socket's receive buffer holds ~1,500 G.711 packets
"""RTP already in the kernel when the BYE came belongs to the call: read before closing (under
load the event loop runs behind the sockets; closing one drops its queue silently)."""


@dataclass(frozen=True)
class Health:
    state: RecorderHealth
    reasons: tuple[str, ...]

    @property
    def accepting(self) -> bool:
        return self.state is RecorderHealth.HEALTHY


STARTING = Health(RecorderHealth.UNAVAILABLE, ("starting",))


class SipRequests(Protocol):
    """What the recorder asks of the SIP thread (``app.SipLink``); both are thread-safe."""

    def hang_up(self, leg_id: str) -> None:
        """Send the leg's BYE (a leg the recorder ends itself)."""

    def stats(self) -> dict[str, int]:
        """SIP requests seen, by method, for the status file."""


class LiveLeg:
    """The runtime of one leg: its state value, its chunker and its socket."""

    def __init__(self, state: LegState, sock: socket.socket, gate: RtpGate) -> None:
        self.state = state
        self.sock = sock
        self.gate = gate  # whose RTP counts (rtp_gate.py)
        self.chunker = LegChunker(state.codec)
        self.early: list[tuple[bytes, int, Address]] = []
        self.bad_datagrams = 0


class Recorder:
    def __init__(
        self,
        settings: RecorderSettings,
        outbox: Outbox,
        ports: PortPool,
        identity: RecorderIdentity,
        loop: asyncio.AbstractEventLoop,
        sip: SipRequests,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.ports = ports
        self.identity = identity
        self.health = STARTING
        self.legs: dict[str, LiveLeg] = {}
        self.sip = sip
        self.draining = False
        self.lost_events = 0
        self.rtp_dropped: Counter[str] = Counter()  # by rtp_gate.Drop, all legs
        self._spool_failed_at = -SPOOL_FAILURE_MEMORY_S
        self._loop = loop
        self._heartbeat_seq = 0

    # -- from the SIP thread ---------------------------------------------------------------------

    def submit(self, fact: SipFact) -> None:
        """Thread-safe: hand a SIP fact to the event loop."""
        self._loop.call_soon_threadsafe(self._on_fact, fact)

    def begin_drain(self) -> None:
        """Thread-safe: refuse new calls, let the current ones finish."""
        self.draining = True

    # -- facts ---------------------------------------------------------------------------------

    def _on_fact(self, fact: SipFact) -> None:
        try:
            if isinstance(fact, DialogAccepted):
                self._open(fact)
            elif isinstance(fact, MediaNegotiated):
                self._negotiated(fact)
            else:
                self._closed(fact)
        except Exception:
            log.exception("recorder failed on %r", fact)

    def _open(self, accepted: DialogAccepted) -> None:
        fact = accepted.opened
        gate = RtpGate(self.settings.rtp_max_datagram_bytes, self.rtp_dropped)
        live = LiveLeg(open_leg(fact, self.identity), accepted.sock, gate)
        self.legs[fact.leg_id] = live
        on_datagram = functools.partial(self._on_datagram, live)
        self._loop.add_reader(accepted.sock.fileno(), read_stamped, accepted.sock, on_datagram)
        if fact.media is not None:
            self._start(live, fact.at_us)

    def _start(self, live: LiveLeg, at_us: int) -> None:
        live.state, started = start_leg(live.state, at_us)
        live.chunker.codec = live.state.codec
        self._emit(started)
        early, live.early = live.early, []
        for data, arrival, sender in early:
            self._on_datagram(live, data, arrival, sender)

    def _negotiated(self, fact: MediaNegotiated) -> None:
        live = self.legs.get(fact.leg_id)
        if live is None:
            return
        old_codec = live.state.codec
        live.state, updates = negotiate(live.state, fact)
        if not live.state.started:
            self._start(live, fact.at_us)
            return
        if live.state.codec != old_codec:
            self._emit_chunk(live, live.chunker.change_codec(live.state.codec, fact.at_us))
        for update in updates:
            self._emit(update)

    def _closed(self, fact: DialogClosed) -> None:
        self._end(fact.leg_id, fact.reason, fact.at_us, fact.sip_reason, fact.q850_cause)

    def _end(
        self,
        leg_id: str,
        reason: LegEndReason,
        at_us: int,
        sip_reason: str | None = None,
        q850_cause: int | None = None,
    ) -> None:
        live = self.legs.pop(leg_id, None)
        if live is None:
            return
        sock = live.sock
        self._loop.remove_reader(sock.fileno())
        read_stamped(sock, functools.partial(self._on_datagram, live), DRAIN_LIMIT)
        sock.close()
        self.ports.release(live.state.opened.local_port)
        if live.gate.dropped:
            log.warning("leg %s: RTP dropped %s", leg_id, dict(live.gate.dropped))
        if not live.state.started:
            return  # cancelled or never acknowledged: nothing was recorded, nothing to say
        self._emit_chunk(live, live.chunker.flush(at_us))
        totals = live.chunker.totals()
        self._emit(end_leg(live.state, reason, totals, at_us, sip_reason, q850_cause))

    # -- media ---------------------------------------------------------------------------------

    def _on_datagram(self, live: LiveLeg, data: bytes, arrival_us: int, sender: Address) -> None:
        if not live.state.started:
            if len(live.early) < EARLY_PACKETS:
                live.early.append((data, arrival_us, sender))
            return
        if not live.gate.admit(live.state.media, sender, data):
            return
        try:
            packet = parse_rtp(data, arrival_us)
        except BadRtp:
            live.bad_datagrams += 1
            return
        closed = live.chunker.add(packet)
        if closed is not None:
            self._emit_chunk(live, closed)

    def _emit_chunk(self, live: LiveLeg, chunk: ClosedChunk | None) -> None:
        if chunk is None:
            return
        try:
            self.outbox.put_encoded(
                AUDIO_TOPIC,
                live.state.call_key.encode(),
                AudioChunk.avro_name,
                encode_chunk(live.state, chunk),
            )
        except SpoolFull as e:
            self._spool_failed(e)
            log.error("LOST chunk %d of %s: %s", chunk.chunk_seq, live.state.leg_id, e)

    def _emit(self, event: Event) -> None:
        try:
            self.outbox.put(event)
        except SpoolFull as e:
            self._spool_failed(e)
            log.error("LOST %s of %s: %s", type(event).__name__, getattr(event, "call_key", ""), e)

    # -- time ----------------------------------------------------------------------------------

    def _tick(self) -> None:
        now_us = time.time_ns() // 1000
        for live in list(self.legs.values()):
            self._emit_chunk(live, live.chunker.tick(now_us))
            if live.state.expired(now_us):
                log.warning("leg %s: no session refresh, expired", live.state.leg_id)
                self.sip.hang_up(live.state.leg_id)
                self._end(live.state.leg_id, LegEndReason.SESSION_EXPIRED, now_us)
        self.health = self._assess()

    def _spool_failed(self, error: SpoolFull) -> None:
        self.lost_events += 1
        self._spool_failed_at = time.monotonic()

    def _assess(self) -> Health:
        if self.draining:
            return Health(RecorderHealth.DRAINING, ("draining",))
        reasons = []
        if not self.outbox.kafka_reachable:
            reasons.append("Kafka unreachable")
        if self.outbox.spool.pending_bytes > self.settings.spool_unhealthy_bytes:
            reasons.append("spool above its threshold")
        if len(self.legs) >= self.settings.max_legs:
            reasons.append("at capacity")
        if time.monotonic() - self._spool_failed_at < SPOOL_FAILURE_MEMORY_S:
            reasons.append("spool full or not writable")
        if reasons:
            return Health(RecorderHealth.UNAVAILABLE, tuple(reasons))
        return Health(RecorderHealth.HEALTHY, ())

    def _heartbeat(self) -> RecorderHeartbeat:
        health = self.health
        beat = RecorderHeartbeat(
            producer_id=self.identity.recorder_id,
            recorder_id=self.identity.recorder_id,
            incarnation=self.identity.incarnation,
            heartbeat_seq=self._heartbeat_seq,
            interval_ms=self.settings.heartbeat_interval_ms,
            health=health.state,
            health_reasons=list(health.reasons),
            active_legs=len(self.legs),
            active_leg_ids=sorted(self.legs),
            max_legs=self.settings.max_legs,
            spool_bytes=self.outbox.spool.pending_bytes,
            spool_oldest_age_ms=self.outbox.spool.oldest_pending_age_ms(),
            sip_address=f"{self.settings.sip_host}:{self.settings.sip_port}",
            rtp_dropped=dict(self.rtp_dropped),
        )
        self._heartbeat_seq += 1
        return beat

    def _write_status(self) -> None:
        """The stack's health probe: a JSON file rewritten every heartbeat (stale = dead)."""
        state = self.health.state
        write_health(
            self.settings.data_dir / "status.json", "recorder",
            "running" if state == RecorderHealth.HEALTHY else state.value.lower(),
            recorder_id=self.identity.recorder_id,
            incarnation=self.identity.incarnation,
            health=state.value,
            reasons=list(self.health.reasons),
            active_legs=len(self.legs),
            spool_bytes=self.outbox.spool.pending_bytes,
            spool_oldest_age_ms=self.outbox.spool.oldest_pending_age_ms(),
            spool_backlog_events=self.outbox.backlog,
            published_events=self.outbox.published,
            lost_events=self.lost_events,
            rejected_by_kafka=self.outbox.rejected,
            rtp_dropped=dict(self.rtp_dropped),
            kafka_reachable=self.outbox.kafka_reachable,
            sip=self.sip.stats(),
        )

    # -- lifetime ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, drain_timeout_s: float) -> None:
        """Record until ``stop``; then drain: wait for calls, end the rest, flush the spool."""
        self.outbox.start()
        next_beat = time.monotonic()
        interval = self.settings.heartbeat_interval_ms / 1000
        drain_deadline: float | None = None
        while True:
            self._tick()
            now = time.monotonic()
            if now >= next_beat:
                self._emit(self._heartbeat())
                self._write_status()
                next_beat = now + interval
            if stop.is_set() and drain_deadline is None:
                self.begin_drain()
                drain_deadline = now + drain_timeout_s
                log.info("draining: %d legs, up to %.0f s", len(self.legs), drain_timeout_s)
            if drain_deadline is not None and (not self.legs or now >= drain_deadline):
                break
            await asyncio.sleep(TICK_S)
        now_us = time.time_ns() // 1000
        for leg_id in list(self.legs):
            self.sip.hang_up(leg_id)
            self._end(leg_id, LegEndReason.RECORDER_SHUTDOWN, now_us)
        self._emit(self._heartbeat())
        flushed = await self.outbox.flush(timeout_s=self.settings.flush_timeout_s)
        if not flushed:
            log.warning("Kafka took not all; %d events stay spooled", self.outbox.backlog)
        self._write_status()
        await self.outbox.close()
