"""Hand-made contract events for the call-state tests: one call, its legs, audio and heartbeats."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from callrec.avro.events import (
    AudioChunk,
    Event,
    Leg,
    LegChange,
    LegEnded,
    LegEndReason,
    LegStarted,
    LegUpdated,
    RecorderHealth,
    RecorderHeartbeat,
    RtpPacket,
)

T0_US = 1_790_000_000_000_000
SECOND = 1_000_000


def at(micros: int) -> datetime:
    return datetime.fromtimestamp(micros // SECOND, UTC).replace(microsecond=micros % SECOND)


def new_call_key(cluster: str = "StreamsTest") -> str:
    return f"{cluster}:{uuid.uuid4().int % 10**12}"


def packets(count: int, t_us: int, payload: int = 4) -> list[RtpPacket]:
    return [
        RtpPacket(
            rtp_seq=i, rtp_timestamp=i * 160, ssrc=7, payload_type=0, marker=i == 0,
            arrival_time_us=t_us + i * 20_000, payload=bytes(payload),
        )
        for i in range(count)
    ]


@dataclass
class Call:
    """Builds the events of one call; times are offsets in microseconds from ``t0``."""

    key: str = field(default_factory=new_call_key)
    t0: int = T0_US
    recorder: str = "rec-a"
    incarnation: str = "inc-1"

    @property
    def cluster(self) -> str:
        return self.key.rpartition(":")[0]

    @property
    def refci(self) -> str:
        return self.key.rpartition(":")[2]

    def leg_id(self, side: Leg, segment: int = 0) -> str:
        return f"{self.key}/{side.value}/{segment}"

    def started(
        self, side: Leg, t: int = 0, *, segment: int = 0, recorder: str | None = None,
        incarnation: str | None = None, session_expires_s: int | None = None,
    ) -> LegStarted:
        rec = recorder or self.recorder
        return LegStarted(
            event_time=at(self.t0 + t), producer_id=rec, call_key=self.key, leg=side,
            leg_id=self.leg_id(side, segment), recorder_id=rec,
            recorder_incarnation=incarnation or self.incarnation, sip_call_id=f"cid-{uuid.uuid4()}",
            from_tag="ft", to_tag="tt", cluster_id=self.cluster, refci=self.refci,
            near_end_addr="1001", near_end_device="SEP1", far_end_addr="1000",
            far_end_device="SEP2", destination="7878", signaling_peer="127.0.0.1:5060",
            codec="PCMU", payload_type=0, clock_rate=8000, media_direction="sendonly",
            remote_rtp_addr="127.0.0.1:4000", local_rtp_port=20000,
            session_expires_s=session_expires_s, segment=segment,
        )

    def updated(
        self, side: Leg, t: int, change: LegChange, *, segment: int = 0,
        session_expires_s: int | None = None, far_end_addr: str | None = None,
    ) -> LegUpdated:
        return LegUpdated(
            event_time=at(self.t0 + t), producer_id=self.recorder, call_key=self.key, leg=side,
            leg_id=self.leg_id(side, segment), change=change, sip_method="INVITE",
            session_expires_s=session_expires_s, far_end_addr=far_end_addr,
        )

    def ended(
        self, side: Leg, t: int, reason: LegEndReason = LegEndReason.BYE, *, segment: int = 0,
        chunks: int = 0,
    ) -> LegEnded:
        return LegEnded(
            event_time=at(self.t0 + t), producer_id=self.recorder, call_key=self.key, leg=side,
            leg_id=self.leg_id(side, segment), reason=reason, packets_received=chunks * 10,
            packets_lost=0, payload_bytes=chunks * 1600, chunk_count=chunks,
        )

    def chunk(self, side: Leg, seq: int, *, segment: int = 0, t: int | None = None,
              lost: int = 0) -> AudioChunk:
        t_us = self.t0 + (t if t is not None else (seq + 1) * 200_000)
        return AudioChunk(
            event_time=at(t_us), producer_id=self.recorder, call_key=self.key, leg=side,
            leg_id=self.leg_id(side, segment), chunk_seq=seq, codec="PCMU", payload_type=0,
            clock_rate=8000, packets=packets(10, t_us - 200_000), packets_lost=lost,
            packets_reordered=0, packets_duplicated=0, ssrc_changes=0,
        )

    def simple(self, chunks: int = 5, end: LegEndReason = LegEndReason.BYE) -> list[Event]:
        """Both legs start, exchange ``chunks`` chunks each, end."""
        events: list[Event] = [self.started(Leg.NEAR_END), self.started(Leg.FAR_END, 10_000)]
        for seq in range(chunks):
            events += [self.chunk(Leg.NEAR_END, seq), self.chunk(Leg.FAR_END, seq)]
        t_end = (chunks + 1) * 200_000
        events += [self.ended(Leg.NEAR_END, t_end, end, chunks=chunks),
                   self.ended(Leg.FAR_END, t_end + 5_000, chunks=chunks)]
        return events


def heartbeat(recorder: str, incarnation: str, t_us: int, seq: int = 0) -> RecorderHeartbeat:
    return RecorderHeartbeat(
        event_time=at(t_us), producer_id=recorder, recorder_id=recorder,
        incarnation=incarnation, heartbeat_seq=seq, interval_ms=1000,
        health=RecorderHealth.HEALTHY, active_legs=0, max_legs=100, sip_address="127.0.0.1:5060",
    )
