import pytest
from hypothesis import given
from hypothesis import strategies as st

from callrec.producers.errors import BadSdp, NoCommonCodec
from callrec.producers.sdp import G722, PCMA, PCMU, build_answer, build_offer, parse_sdp

CUCM_ANSWER = (
    "v=0\r\no=CiscoSystemsCCM-SIP 2000 1 IN IP4 10.0.0.5\r\ns=SIP Call\r\n"
    "c=IN IP4 10.1.1.20\r\nt=0 0\r\nm=audio 24580 RTP/AVP 8 101\r\n"
    "a=rtpmap:8 PCMA/8000\r\na=ptime:20\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\na=sendonly\r\n"
)


def test_offer_is_recvonly_with_every_codec_and_dtmf() -> None:
    offer = build_offer("127.0.0.1", 20000, session_id=5)
    media = parse_sdp(offer)
    assert media.direction == "recvonly"
    assert media.payload_types == (0, 8, 9, 18, 101)
    assert media.rtp_addr == "127.0.0.1:20000"
    assert media.telephone_event_pt() == 101
    assert media.rtpmap[18] == ("G729", 8000)


def test_cucm_answer() -> None:
    media = parse_sdp(CUCM_ANSWER)
    assert media.codec() == PCMA
    assert media.telephone_event_pt() == 101
    assert media.direction == "sendonly" and not media.on_hold
    assert media.rtp_addr == "10.1.1.20:24580"


@pytest.mark.parametrize(
    ("change", "on_hold"),
    [
        (("a=sendonly", "a=inactive"), True),
        (("a=sendonly", "a=recvonly"), True),
        (("c=IN IP4 10.1.1.20", "c=IN IP4 0.0.0.0"), True),
        (("a=sendonly", "a=sendrecv"), False),
        (("a=sendonly\r\n", ""), False),
    ],
)
def test_hold(change: tuple[str, str], on_hold: bool) -> None:
    assert parse_sdp(CUCM_ANSWER.replace(*change)).on_hold is on_hold


def test_session_level_direction_and_address_apply_to_the_stream() -> None:
    sdp = "v=0\r\nc=IN IP4 1.2.3.4\r\na=inactive\r\nm=audio 4000 RTP/AVP 0\r\n"
    media = parse_sdp(sdp)
    assert (media.address, media.direction, media.codec()) == ("1.2.3.4", "inactive", PCMU)


def test_dynamic_payload_type_maps_by_name() -> None:
    sdp = CUCM_ANSWER.replace("RTP/AVP 8 101", "RTP/AVP 96 101").replace(
        "rtpmap:8 PCMA", "rtpmap:96 G722"
    )
    assert parse_sdp(sdp).codec().name == G722.name
    assert parse_sdp(sdp).codec().payload_type == 96


def test_no_common_codec() -> None:
    sdp = CUCM_ANSWER.replace("RTP/AVP 8 101", "RTP/AVP 3 101").replace("rtpmap:8 PCMA", "x")
    with pytest.raises(NoCommonCodec):
        parse_sdp(sdp).codec()


@pytest.mark.parametrize(
    "body",
    [
        "",
        "v=0\r\n",
        "m=audio 1 RTP/AVP 0\r\n",
        "c=IN\r\nm=audio 1 RTP/AVP 0",
        "m=audio x RTP/AVP 0",
    ],
)
def test_bad_sdp(body: str) -> None:
    with pytest.raises(BadSdp):
        parse_sdp(body)


def test_answer_to_an_offer_picks_one_codec_recvonly() -> None:
    offer = parse_sdp(CUCM_ANSWER.replace("RTP/AVP 8 101", "RTP/AVP 18 0 101"))
    answer = parse_sdp(build_answer(offer, "127.0.0.1", 20002, session_id=1))
    assert answer.payload_types == (18, 101)
    assert answer.direction == "recvonly"


@given(st.text(max_size=400))
def test_any_body_parses_or_is_refused_clearly(body: str) -> None:
    try:
        parse_sdp(body)
    except BadSdp:
        pass
