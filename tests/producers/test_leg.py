
import pytest

from callrec.avro.events import Leg, LegChange, LegEndReason
from callrec.producers.chunker import LegTotals
from callrec.producers.leg import (
    LegState,
    RecorderIdentity,
    end_leg,
    negotiate,
    open_leg,
    start_leg,
)
from callrec.producers.metadata import call_metadata
from callrec.producers.sdp import parse_sdp
from callrec.producers.sip_facts import DialogOpened, MediaNegotiated, end_reason, q850_cause

FROM = (
    "<sip:1001@h;x-nearend;x-refci=5;x-nearendclusterid=A;x-farendaddr=1000;"
    "x-farenddevice=SEP1>;tag=9"
)


def sdp(direction: str = "sendonly", pts: str = "8 101", addr: str = "10.0.0.9") -> str:
    return (
        f"v=0\r\nc=IN IP4 {addr}\r\nm=audio 4000 RTP/AVP {pts}\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    )


@pytest.fixture
def leg() -> LegState:
    opened = DialogOpened(
        "r1:c1", call_metadata(FROM, "d"), "c1", "9", "t", "1-2-3-4", "7878",
        "127.0.0.1:5060", 20000, 1800, None, 1_000_000,
    )  # fmt: skip
    state = open_leg(opened, RecorderIdentity("r1", "inc"))
    state, _ = negotiate(state, MediaNegotiated("r1:c1", "INVITE", parse_sdp(sdp()), None, {}, 2))
    return state


def test_the_ack_answer_starts_the_leg(leg: LegState) -> None:
    started, event = start_leg(leg, 2_000_000)
    assert started.started and event.leg is Leg.NEAR_END and event.call_key == "A:5"
    assert (event.codec, event.payload_type, event.telephone_event_pt) == ("PCMA", 8, 101)
    assert (event.remote_rtp_addr, event.media_direction) == ("10.0.0.9:4000", "sendonly")
    assert (event.cisco_guid, event.session_expires_s, event.local_rtp_port) == (
        "1-2-3-4",
        1800,
        20000,
    )


@pytest.mark.parametrize(
    ("body", "from_params", "changes"),
    [
        (None, {}, [LegChange.SESSION_REFRESH]),
        (sdp(), {}, [LegChange.SESSION_REFRESH]),
        (sdp("inactive"), {}, [LegChange.HOLD]),
        (sdp(addr="0.0.0.0"), {}, [LegChange.HOLD]),
        (sdp(pts="0 101"), {}, [LegChange.CODEC_CHANGE]),
        (sdp(addr="10.0.0.10"), {}, [LegChange.MEDIA_ADDRESS_CHANGE]),
        (None, {"x-farendaddr": "2000"}, [LegChange.PARTY_CHANGE]),
        (None, {"x-farendaddr": "1000"}, [LegChange.SESSION_REFRESH]),
    ],
)
def test_what_a_reinvite_or_update_changed(
    leg: LegState, body: str | None, from_params: dict[str, str], changes: list[LegChange]
) -> None:
    leg, _ = start_leg(leg, 0)
    media = parse_sdp(body) if body else None
    fact = MediaNegotiated("r1:c1", "INVITE", media, 900, from_params, 5_000_000)
    after, events = negotiate(leg, fact)
    assert [e.change for e in events] == changes
    assert after.refreshed_at_us == 5_000_000 and after.session_expires_s == 900


def test_resume_after_hold(leg: LegState) -> None:
    leg, _ = start_leg(leg, 0)
    held, _ = negotiate(
        leg, MediaNegotiated("r1:c1", "INVITE", parse_sdp(sdp("inactive")), None, {}, 1)
    )
    assert held.on_hold
    _, events = negotiate(held, MediaNegotiated("r1:c1", "INVITE", parse_sdp(sdp()), None, {}, 2))
    assert [e.change for e in events] == [LegChange.RESUME]


def test_session_expiry(leg: LegState) -> None:
    assert not leg.expired(2 + 1800 * 1_000_000)
    assert leg.expired(3 + 1800 * 1_000_000)


def test_end_reasons() -> None:
    assert q850_cause('Q.850;cause=47;text="x"') == 47 and q850_cause("SIP;cause=200") is None
    assert end_reason("BYE", 47) is LegEndReason.CODEC_MISMATCH
    assert end_reason("BYE", 16) is LegEndReason.BYE
    assert end_reason("CANCEL", None) is LegEndReason.CANCEL


def test_leg_ended_carries_the_totals(leg: LegState) -> None:
    event = end_leg(leg, LegEndReason.BYE, LegTotals(10, 1, 1600, 2), 9, "Q.850;cause=16", 16)
    assert (event.packets_received, event.packets_lost, event.payload_bytes, event.chunk_count) == (
        10, 1, 1600, 2,
    )  # fmt: skip
    assert event.q850_cause == 16 and event.leg_id == "r1:c1"
