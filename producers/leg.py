"""A leg's facts and the lifecycle events they become (pure: no sockets, no Kafka).

Decide, then record: each function looks at the leg as it is and at what the SIP side reported,
and returns the leg as it now is with the events that say what changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from callrec.avro.events import (
    LegChange,
    LegEnded,
    LegEndReason,
    LegStarted,
    LegUpdated,
)
from callrec.producers.chunker import LegTotals
from callrec.producers.errors import NoCommonCodec
from callrec.producers.sdp import Codec, RemoteMedia
from callrec.producers.sip_facts import DialogOpened, MediaNegotiated

UNKNOWN_CODEC = Codec("UNKNOWN", -1, 8000)


@dataclass(frozen=True)
class RecorderIdentity:
    recorder_id: str
    incarnation: str


@dataclass(frozen=True)
class LegState:
    opened: DialogOpened
    identity: RecorderIdentity
    codec: Codec
    media: RemoteMedia | None
    session_expires_s: int | None
    refreshed_at_us: int
    started: bool = False

    @property
    def leg_id(self) -> str:
        return str(self.opened.leg_id)

    @property
    def call_key(self) -> str:
        return str(self.opened.meta.call_key)

    @property
    def on_hold(self) -> bool:
        return self.media is not None and self.media.on_hold

    def expired(self, now_us: int) -> bool:
        """RFC 4028 10: no refresh within the interval (the refresher sends one at half of it)."""
        if self.session_expires_s is None:
            return False
        return now_us - self.refreshed_at_us > self.session_expires_s * 1_000_000


def _time(at_us: int) -> datetime:
    return datetime.fromtimestamp(at_us / 1_000_000, UTC)


def _codec_of(media: RemoteMedia | None) -> Codec:
    if media is None:
        return UNKNOWN_CODEC
    try:
        return media.codec()
    except NoCommonCodec:
        # Recorded as is: CUCM follows with BYE cause 47, which ends the leg as CODEC_MISMATCH.
        first = media.payload_types[0] if media.payload_types else -1
        return Codec(media.rtpmap.get(first, (f"PT{first}", 8000))[0], first, 8000)


def open_leg(opened: DialogOpened, identity: RecorderIdentity) -> LegState:
    return LegState(
        opened=opened,
        identity=identity,
        codec=_codec_of(opened.media),
        media=opened.media,
        session_expires_s=opened.session_expires_s,
        refreshed_at_us=opened.at_us,
    )


def start_leg(leg: LegState, at_us: int) -> tuple[LegState, LegStarted]:
    """The leg is recording: the offer/answer is complete (ACK, or an INVITE with an offer)."""
    o, m, media = leg.opened, leg.opened.meta, leg.media
    event = LegStarted(
        event_time=_time(at_us),
        producer_id=leg.identity.recorder_id,
        call_key=leg.call_key,
        leg=m.leg,
        leg_id=leg.leg_id,
        recorder_id=leg.identity.recorder_id,
        recorder_incarnation=leg.identity.incarnation,
        sip_call_id=o.sip_call_id,
        from_tag=o.from_tag,
        to_tag=o.to_tag,
        cisco_guid=o.cisco_guid,
        cluster_id=m.cluster_id,
        refci=m.refci,
        far_end_refci=m.far_end_refci,
        near_end_addr=m.near_end_addr,
        near_end_device=m.near_end_device,
        near_end_cluster_id=m.near_end_cluster_id,
        near_end_guid=m.near_end_guid,
        far_end_addr=m.far_end_addr,
        far_end_device=m.far_end_device,
        far_end_cluster_id=m.far_end_cluster_id,
        far_end_guid=m.far_end_guid,
        destination=o.destination,
        from_display=m.from_display,
        from_params=m.from_params,
        signaling_peer=o.signaling_peer,
        codec=leg.codec.name,
        payload_type=leg.codec.payload_type,
        clock_rate=leg.codec.clock_rate,
        telephone_event_pt=media.telephone_event_pt() if media else None,
        media_direction=media.direction if media else "unknown",
        remote_rtp_addr=media.rtp_addr if media else "",
        local_rtp_port=o.local_port,
        session_expires_s=leg.session_expires_s,
    )
    return replace(leg, started=True), event


def negotiate(leg: LegState, fact: MediaNegotiated) -> tuple[LegState, list[LegUpdated]]:
    """A re-INVITE / UPDATE / late ACK: what changed, as LegUpdated events (refresh if nothing)."""
    new_media = fact.media or leg.media
    new_codec = _codec_of(new_media) if fact.media is not None else leg.codec
    session = fact.session_expires_s or leg.session_expires_s
    changed = replace(
        leg, media=new_media, codec=new_codec, session_expires_s=session,
        refreshed_at_us=fact.at_us,
    )  # fmt: skip
    if not leg.started:
        return changed, []
    changes: list[LegChange] = []
    if new_media is not None and leg.media is not None:
        if new_media.on_hold != leg.media.on_hold:
            changes.append(LegChange.HOLD if new_media.on_hold else LegChange.RESUME)
        if new_codec != leg.codec and not new_media.on_hold:
            changes.append(LegChange.CODEC_CHANGE)
        if new_media.rtp_addr != leg.media.rtp_addr and not new_media.on_hold:
            changes.append(LegChange.MEDIA_ADDRESS_CHANGE)
    m = leg.opened.meta
    far_addr = fact.from_params.get("x-farendaddr") or None
    far_device = fact.from_params.get("x-farenddevice") or None
    if (far_addr and far_addr != m.far_end_addr) or (far_device and far_device != m.far_end_device):
        changes.append(LegChange.PARTY_CHANGE)
    if not changes:
        changes.append(LegChange.SESSION_REFRESH)
    events = [
        LegUpdated(
            event_time=_time(fact.at_us),
            producer_id=leg.identity.recorder_id,
            call_key=leg.call_key,
            leg=m.leg,
            leg_id=leg.leg_id,
            change=change,
            sip_method=fact.method,
            media_direction=fact.media.direction if fact.media else None,
            codec=new_codec.name if change is LegChange.CODEC_CHANGE else None,
            payload_type=new_codec.payload_type if change is LegChange.CODEC_CHANGE else None,
            clock_rate=new_codec.clock_rate if change is LegChange.CODEC_CHANGE else None,
            remote_rtp_addr=new_media.rtp_addr if new_media else None,
            session_expires_s=session,
            far_end_addr=far_addr if change is LegChange.PARTY_CHANGE else None,
            far_end_device=far_device if change is LegChange.PARTY_CHANGE else None,
            from_params=fact.from_params if change is LegChange.PARTY_CHANGE else {},
        )
        for change in changes
    ]
    return changed, events


def end_leg(
    leg: LegState,
    reason: LegEndReason,
    totals: LegTotals,
    at_us: int,
    sip_reason: str | None = None,
    q850_cause: int | None = None,
    rtp_dropped: Mapping[str, int] | None = None,
) -> LegEnded:
    return LegEnded(
        event_time=_time(at_us),
        producer_id=leg.identity.recorder_id,
        call_key=leg.call_key,
        leg=leg.opened.meta.leg,
        leg_id=leg.leg_id,
        reason=reason,
        sip_reason=sip_reason,
        q850_cause=q850_cause,
        packets_received=totals.packets_received,
        packets_lost=totals.packets_lost,
        payload_bytes=totals.payload_bytes,
        chunk_count=totals.chunk_count,
        rtp_dropped=dict(rtp_dropped or {}),
    )
