"""The recorder's leg runtime (asyncio side): live legs, their RTP sockets and chunkers.

It receives what the SIP thread reports (``submit``, thread-safe), owns every RTP socket, and
emits every event through the spool-first outbox. What to decide lives in pure modules
(``leg.py``: the events of a leg's facts; ``lifecycle.py``: when the recorder ends a leg itself);
the process's health, heartbeats, status file and draining live in ``vitals.py``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections import Counter
from typing import Protocol

from callrec.avro.events import AudioChunk, Event, LegEndReason
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
from callrec.producers.lifecycle import LegLimits, due_end, keep_early
from callrec.producers.media import PortPool, RtpPoller, read_stamped
from callrec.producers.outbox import Outbox
from callrec.producers.rtp import parse_rtp
from callrec.producers.rtp_gate import Address, RtpGate
from callrec.producers.settings import RecorderSettings
from callrec.producers.sip_facts import DialogAccepted, DialogClosed, MediaNegotiated, SipFact

log = logging.getLogger(__name__)
STALL_US = 2_000_000
"""Ticks come every 50 ms; a gap past this means the recorder itself stood still."""
DRAIN_LIMIT = 2000  # a socket's receive buffer holds ~1,500 G.711 packets
"""RTP already in the kernel when the BYE came belongs to the call: read before closing (under
load the event loop runs behind the sockets; closing one drops its queue silently)."""


class SipRequests(Protocol):
    """What the recorder asks of the SIP thread (``main.SipLink``); both are thread-safe."""

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
        self.media_seen_us = state.opened.at_us
        """Last RTP datagram, start or offer/answer: what the media timeout counts from."""


class Recorder:
    """Legs from facts to events; ``tick`` closes idle chunks and ends legs the rules end."""

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
        self.limits = LegLimits(settings.media_timeout_s, settings.max_leg_duration_s)
        self.legs: dict[str, LiveLeg] = {}
        self.sip = sip
        self.lost_events = 0
        self._ticked_us = time.time_ns() // 1000
        self.last_loss_at = -float("inf")
        """``time.monotonic()`` of the last event the spool refused (health looks back at it)."""
        self.rtp_dropped: Counter[str] = Counter()  # by rtp_gate.Drop, all legs
        self._loop = loop
        self.rtp = RtpPoller(loop)

    # -- from the SIP thread ---------------------------------------------------------------------

    def submit(self, fact: SipFact) -> None:
        """Thread-safe: hand a SIP fact to the event loop."""
        self._loop.call_soon_threadsafe(self._on_fact, fact)

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
        live.chunker.max_bytes = self.settings.chunk_max_bytes
        self.legs[fact.leg_id] = live
        self.rtp.add(accepted.sock, functools.partial(self._on_datagram, live))
        if fact.media is not None:
            self._start(live, fact.at_us)

    def _start(self, live: LiveLeg, at_us: int) -> None:
        live.state, started = start_leg(live.state, at_us)
        live.chunker.codec = live.state.codec
        live.media_seen_us = max(live.media_seen_us, at_us)
        self.emit(started)
        early, live.early = live.early, []
        for data, arrival, sender in early:
            self._on_datagram(live, data, arrival, sender)

    def _negotiated(self, fact: MediaNegotiated) -> None:
        live = self.legs.get(fact.leg_id)
        if live is None:
            return
        old_codec = live.state.codec
        live.state, updates = negotiate(live.state, fact)
        if fact.media is not None:
            live.media_seen_us = max(live.media_seen_us, fact.at_us)
        if not live.state.started:
            self._start(live, fact.at_us)
            return
        if live.state.codec != old_codec:
            self._emit_chunk(live, live.chunker.change_codec(live.state.codec, fact.at_us))
        for update in updates:
            self.emit(update)

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
        self.rtp.remove(sock)
        read_stamped(sock, functools.partial(self._on_datagram, live), DRAIN_LIMIT)
        sock.close()
        self.ports.release(live.state.opened.local_port)
        if live.gate.dropped:
            log.warning("leg %s: RTP dropped %s", leg_id, dict(live.gate.dropped))
        if not live.state.started:
            return  # cancelled or never acknowledged: nothing was recorded, nothing to say
        self._emit_chunk(live, live.chunker.flush(at_us))
        totals = live.chunker.totals()
        self.emit(end_leg(live.state, reason, totals, at_us, sip_reason, q850_cause,
                          live.gate.dropped))

    def end_all(self, reason: LegEndReason, at_us: int) -> None:
        """End every live leg with a BYE (the recorder stops)."""
        for leg_id in list(self.legs):
            self.sip.hang_up(leg_id)
            self._end(leg_id, reason, at_us)

    # -- media ---------------------------------------------------------------------------------

    def _on_datagram(self, live: LiveLeg, data: bytes, arrival_us: int, sender: Address) -> None:
        state = live.state
        if not state.started:
            if keep_early(len(live.early)):
                live.early.append((data, arrival_us, sender))
            return
        # The gate judges before anything is recorded; the header is parsed first only so that the
        # common packet (latched sender and SSRC) is judged from its parsed SSRC in one compare.
        gate = live.gate
        try:
            packet = parse_rtp(data, arrival_us)
        except BadRtp:
            if gate.admit(state.media, sender, data):
                live.bad_datagrams += 1  # from the right sender, but not RTP
            return
        if not gate.settled(state.media, sender, len(data), packet.ssrc) and not gate.admit(
            state.media, sender, data
        ):
            return
        if arrival_us > live.media_seen_us:  # early RTP replays older
            live.media_seen_us = arrival_us
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
            self._lost()
            log.error("LOST chunk %d of %s: %s", chunk.chunk_seq, live.state.leg_id, e)

    def emit(self, event: Event) -> None:
        """Spool the event for Kafka; one the spool refuses is counted and logged as lost."""
        try:
            self.outbox.put(event)
        except SpoolFull as e:
            self._lost()
            log.error("LOST %s of %s: %s", type(event).__name__, getattr(event, "call_key", ""), e)

    def _lost(self) -> None:
        self.lost_events += 1
        self.last_loss_at = time.monotonic()

    # -- time ----------------------------------------------------------------------------------

    def tick(self, now_us: int) -> None:
        """Close chunks of streams that went quiet; end (with a BYE) the legs a rule ends.

        After the recorder itself stood still (SIGSTOP, a frozen VM, a long GC), its legs' RTP
        waits unread in the kernel: that silence is the recorder's, not the phones'. The legs'
        media clocks restart and no leg is judged on this tick, so the backlog is read first
        (seen: a recorder frozen 60 s hung up every call with MEDIA_TIMEOUT on resuming)."""
        stood_still_us = now_us - self._ticked_us
        self._ticked_us = now_us
        if stood_still_us > STALL_US:
            log.warning("the recorder stood still for %.1f s: its %d legs' media clocks restart",
                        stood_still_us / 1e6, len(self.legs))
            for live in self.legs.values():
                live.media_seen_us = max(live.media_seen_us, now_us)
            return
        for live in list(self.legs.values()):
            self._emit_chunk(live, live.chunker.tick(now_us))
            decision = due_end(live.state, live.media_seen_us, now_us, self.limits)
            if decision is not None:
                log.warning("leg %s: %s, hanging up", live.state.leg_id, decision.why)
                self.sip.hang_up(live.state.leg_id)
                self._end(live.state.leg_id, decision.reason, now_us, decision.why)
