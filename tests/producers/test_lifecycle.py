"""When the recorder ends a leg itself: the rules of lifecycle.py, without sockets or clocks."""

import pytest

from callrec.avro.events import LegEndReason
from callrec.producers.leg import LegState, RecorderIdentity, negotiate, open_leg, start_leg
from callrec.producers.lifecycle import EARLY_PACKETS, LegLimits, due_end, keep_early
from callrec.producers.metadata import call_metadata
from callrec.producers.sdp import parse_sdp
from callrec.producers.sip_facts import DialogOpened, MediaNegotiated

S = 1_000_000  # microseconds in a second
OPENED_US = 100 * S
LIMITS = LegLimits(media_timeout_s=10, max_duration_s=3600)


def sdp(direction: str) -> str:
    return f"v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4000 RTP/AVP 8\r\na={direction}\r\n"


def new_leg(session_expires_s: int | None = None, started: bool = True) -> LegState:
    opened = DialogOpened(
        leg_id="r1:c1",
        meta=call_metadata("<sip:1001@h;x-nearend;x-refci=5;x-nearendclusterid=A>;tag=9", "d"),
        sip_call_id="c1", from_tag="9", to_tag="t", cisco_guid=None, destination="7878",
        signaling_peer="127.0.0.1:5060", local_port=20000, session_expires_s=session_expires_s,
        media=parse_sdp(sdp("sendonly")), at_us=OPENED_US,
    )  # fmt: skip
    leg = open_leg(opened, RecorderIdentity("r1", "inc"))
    return start_leg(leg, OPENED_US)[0] if started else leg


def on_hold(leg: LegState) -> LegState:
    fact = MediaNegotiated("r1:c1", "INVITE", parse_sdp(sdp("inactive")), None, {}, OPENED_US)
    return negotiate(leg, fact)[0]


@pytest.mark.parametrize(
    ("leg", "media_seen_s", "now_s", "reason"),
    [
        (new_leg(), 100, 105, None),  # audio a moment ago
        (new_leg(), 100, 110, None),  # exactly the timeout: not yet
        (new_leg(), 100, 111, LegEndReason.MEDIA_TIMEOUT),
        (new_leg(), 200, 209, None),  # the last packet counts, not the start
        (new_leg(), 200, 211, LegEndReason.MEDIA_TIMEOUT),
        (on_hold(new_leg()), 100, 3000, None),  # on hold CUCM sends nothing: no timeout
        (on_hold(new_leg()), 100, 100 + 3601, LegEndReason.OTHER),  # ... but the age counts
        (new_leg(started=False), 100, 500, None),  # not started: no media expected yet
        (new_leg(started=False), 100, 100 + 3601, LegEndReason.OTHER),
        (new_leg(), 3700, 100 + 3601, LegEndReason.OTHER),  # streaming, but too old
        (new_leg(session_expires_s=90), 185, 190, None),
        (new_leg(session_expires_s=90), 190, 191, LegEndReason.SESSION_EXPIRED),
        # the session rule first: it is the one CUCM agreed to
        (new_leg(session_expires_s=90), 100, 100 + 3601, LegEndReason.SESSION_EXPIRED),
    ],
)
def test_which_rule_ends_a_leg(
    leg: LegState, media_seen_s: int, now_s: int, reason: LegEndReason | None
) -> None:
    decision = due_end(leg, media_seen_s * S, now_s * S, LIMITS)
    assert (decision.reason if decision else None) is reason


def test_the_reason_says_which_limit_in_words() -> None:
    timeout = due_end(new_leg(), 100 * S, 111 * S, LIMITS)
    too_old = due_end(new_leg(), 3700 * S, 3701 * S + OPENED_US, LIMITS)
    assert timeout is not None and timeout.why == "no RTP for 10 s"
    assert too_old is not None and too_old.why == "maximum leg duration of 3600 s reached"


def test_zero_turns_a_limit_off() -> None:
    off = LegLimits(media_timeout_s=0, max_duration_s=0)
    assert due_end(new_leg(), 0, 10**6 * S, off) is None


def test_early_rtp_is_bounded() -> None:
    assert keep_early(0) and keep_early(EARLY_PACKETS - 1)
    assert not keep_early(EARLY_PACKETS)
