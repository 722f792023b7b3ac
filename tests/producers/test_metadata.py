import pytest
from hypothesis import given
from hypothesis import strategies as st

from callrec.avro.events import Leg
from callrec.producers.errors import MissingCallMetadata
from callrec.producers.metadata import call_metadata, parse_name_addr

NEAR = (
    '"Agent 1001" <sip:1001@cucm.example;x-nearend;x-refci=19301625;'
    "x-nearendclusterid=ClusterA;x-nearenddevice=SEP6C416A369525;x-nearendaddr=1001;"
    "x-farendrefci=19301624;x-farendclusterid=ClusterA;x-farenddevice=SEP38ED18552A12;"
    "x-farendaddr=1000>;tag=104958~1"
)
FAR = NEAR.replace("x-nearend;", "x-farend;").replace("tag=104958~1", "tag=99")


def test_near_end_leg_metadata() -> None:
    meta = call_metadata(NEAR, "default")
    assert meta.leg is Leg.NEAR_END
    assert meta.call_key == "ClusterA:19301625"
    assert meta.far_end_refci == "19301624"
    assert (meta.near_end_addr, meta.near_end_device) == ("1001", "SEP6C416A369525")
    assert (meta.far_end_addr, meta.far_end_device) == ("1000", "SEP38ED18552A12")
    assert meta.from_display == "Agent 1001"
    assert meta.from_params["x-nearend"] == ""
    assert "tag" not in meta.from_params


def test_both_legs_share_the_call_key() -> None:
    near, far = call_metadata(NEAR, "d"), call_metadata(FAR, "d")
    assert far.leg is Leg.FAR_END
    assert near.call_key == far.call_key


@pytest.mark.parametrize(
    ("params", "expected_key"),
    [
        ("x-nearend;x-refci=7;x-nearendclusterid=A;x-farendclusterid=B", "A:7"),
        ("x-nearend;x-refci=7;x-farendclusterid=B", "B:7"),
        ("x-farend;x-refci=7", "site:7"),
        ("X-NearEnd;X-RefCI=7;X-NearEndClusterId=A", "A:7"),
    ],
)
def test_cluster_id_falls_back(params: str, expected_key: str) -> None:
    assert call_metadata(f"<sip:1@h;{params}>;tag=1", "site").call_key == expected_key


@pytest.mark.parametrize(
    "header",
    [
        "<sip:1@h;x-refci=7>",  # no leg flag
        "<sip:1@h;x-nearend>",  # no refci
        "<sip:1@h;x-nearend;x-refci=>",  # empty refci
        "<http://h;x-nearend;x-refci=7>",  # not SIP
        "<sip:1@h;x-nearend;x-refci=7",  # unterminated
        "",
    ],
)
def test_refuses_headers_without_metadata(header: str) -> None:
    with pytest.raises(MissingCallMetadata):
        call_metadata(header, "site")


def test_params_without_angle_brackets_belong_to_the_header() -> None:
    addr = parse_name_addr("sip:1001@h;tag=5")
    assert addr.uri_params == {} and addr.header_params == {"tag": "5"}


@given(st.text(max_size=300))
def test_any_text_is_metadata_or_a_clear_refusal(header: str) -> None:
    try:
        meta = call_metadata(header, "site")
    except MissingCallMetadata:
        return
    assert meta.refci and meta.cluster_id


@given(
    refci=st.from_regex(r"[0-9]{1,10}", fullmatch=True),
    cluster=st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True),
)
def test_call_key_round_trips(refci: str, cluster: str) -> None:
    header = f"<sip:1@h;x-nearend;x-refci={refci};x-nearendclusterid={cluster}>;tag=a"
    assert call_metadata(header, "x").call_key == f"{cluster}:{refci}"
