"""Whose RTP a leg records (rtp_gate.py): given a latch and a datagram, when judged, then..."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callrec.producers.rtp import build_rtp
from callrec.producers.rtp_gate import Drop, Latch, RtpGate, judge, latch_for
from callrec.producers.sdp import RemoteMedia

PHONE = ("10.0.0.5", 6000)
MAX = 1500


def sdp(address: str = "10.0.0.5", port: int = 6000) -> RemoteMedia:
    return RemoteMedia(address, port, "sendonly", (8, 101), {8: ("PCMA", 8000)})


def rtp(ssrc: int = 0x11, payload: bytes = b"\xd5" * 160, pt: int = 8) -> bytes:
    return build_rtp(1, 160, ssrc, pt, payload)


def judged(latch: Latch, media: RemoteMedia | None, source: tuple[str, int],
           datagram: bytes) -> Drop | None:  # fmt: skip
    return judge(latch, media, source, datagram, MAX)[1]


@pytest.mark.parametrize(
    ("source", "datagram", "verdict"),
    [
        (PHONE, rtp(), None),  # the SDP's address and port
        (("10.0.0.5", 6002), rtp(), None),  # same host, other port: latched (NAT, SBC)
        (("10.0.0.6", 6000), rtp(), Drop.STRANGER),  # another host, even on the SDP's port
        (PHONE, rtp(payload=b"x" * (MAX - 11)), Drop.OVERSIZE),
        (PHONE, rtp(payload=b"x" * (MAX - 12)), None),  # exactly the cap
        (("10.0.0.6", 6000), b"\x00" * 4, Drop.STRANGER),  # not RTP, from a stranger
        (PHONE, b"\x00" * 4, None),  # not RTP from the phone: parse_rtp's to count
    ],
)
def test_first_datagram(source: tuple[str, int], datagram: bytes, verdict: Drop | None) -> None:
    media = sdp()
    assert judged(latch_for(media), media, source, datagram) == verdict


def test_after_the_latch_only_that_address_port_and_ssrc() -> None:
    media = sdp()
    latch, first = judge(latch_for(media), media, ("10.0.0.5", 6002), rtp(), MAX)
    assert first is None and (latch.source, latch.ssrc) == (("10.0.0.5", 6002), 0x11)
    assert judged(latch, media, ("10.0.0.5", 6002), rtp()) is None
    assert judged(latch, media, PHONE, rtp()) is Drop.STRANGER  # the SDP port, not the latched
    assert judged(latch, media, ("10.0.0.5", 6002), rtp(ssrc=0x22)) is Drop.SSRC
    unchanged, _ = judge(latch, media, ("10.0.0.5", 6002), rtp(), MAX)
    assert unchanged is latch  # the per-packet path allocates nothing


def test_non_rtp_latches_nothing() -> None:
    media = sdp()
    latch, verdict = judge(latch_for(media), media, ("10.0.0.5", 7000), b"\x00" * 40, MAX)
    assert verdict is None and latch.source is None
    rtcp_mux = build_rtp(1, 0, 0x33, 72, b"")  # PT 72 = RTCP SR on the RTP port
    latch, _ = judge(latch, media, ("10.0.0.5", 7000), rtcp_mux, MAX)
    assert latch.source is None


def test_a_new_sdp_allows_a_new_ssrc_and_keeps_the_sender_if_the_address_stays() -> None:
    media = sdp()
    latch, _ = judge(latch_for(media), media, ("10.0.0.5", 6002), rtp(), MAX)
    refreshed = sdp()  # a re-INVITE's SDP: a new value, equal to the old
    latch, verdict = judge(latch, refreshed, ("10.0.0.5", 6002), rtp(ssrc=0x22), MAX)
    assert verdict is None and latch.ssrc == 0x22
    assert judged(latch, refreshed, ("10.0.0.9", 6002), rtp(ssrc=0x22)) is Drop.STRANGER


def test_a_new_sdp_with_another_address_moves_the_latch() -> None:
    media = sdp()
    latch, _ = judge(latch_for(media), media, PHONE, rtp(), MAX)
    moved = sdp("10.0.0.7", 7000)
    assert judged(latch, moved, PHONE, rtp()) is Drop.STRANGER  # the old phone, after the move
    latch, verdict = judge(latch, moved, ("10.0.0.7", 7000), rtp(ssrc=0x44), MAX)
    assert verdict is None and latch.source == ("10.0.0.7", 7000)


@pytest.mark.parametrize("media", [None, sdp("phone.example")])
def test_no_usable_sdp_address_latches_the_first_rtp_sender(media: RemoteMedia | None) -> None:
    latch, verdict = judge(latch_for(media), media, ("10.9.9.9", 4000), rtp(), MAX)
    assert verdict is None and latch.source == ("10.9.9.9", 4000)
    assert judged(latch, media, ("10.9.9.8", 4000), rtp()) is Drop.STRANGER


def test_hold_address_takes_nobody() -> None:
    media = sdp("0.0.0.0")
    assert judged(latch_for(media), media, PHONE, rtp()) is Drop.STRANGER


def test_ipv6_sources_compare_by_address_and_port() -> None:
    media = sdp("2001:db8::5", 6000)
    latch, verdict = judge(latch_for(media), media, ("2001:db8::5", 6000, 0, 0), rtp(), MAX)  # type: ignore[arg-type]
    assert verdict is None and latch.source == ("2001:db8::5", 6000)


def test_the_gate_counts_per_leg_and_in_the_recorders_totals() -> None:
    totals: Counter[str] = Counter()
    a, b = RtpGate(MAX, totals), RtpGate(MAX, totals)
    media = sdp()
    assert a.admit(media, PHONE, rtp())
    assert not a.admit(media, ("10.0.0.6", 1), rtp())
    assert not a.admit(media, PHONE, rtp(ssrc=9))
    assert not b.admit(media, PHONE, b"x" * 2048)
    assert a.dropped == Counter({Drop.STRANGER: 1, Drop.SSRC: 1})
    assert b.dropped == Counter({Drop.OVERSIZE: 1})
    assert totals == Counter({"stranger": 1, "ssrc": 1, "oversize": 1})


@given(
    st.lists(
        st.tuples(
            st.sampled_from([PHONE, ("10.0.0.5", 6002), ("10.0.0.6", 6000)]),
            st.sampled_from([0x11, 0x22]),
            st.sampled_from([160, MAX - 12, MAX - 11]),
            st.booleans(),  # a new SDP (same address) before this packet
        ),
        max_size=12,
    )
)
def test_settled_packets_are_what_admit_records_without_moving_the_latch(
    packets: list[tuple[tuple[str, int], int, int, bool]],
) -> None:
    """The recorder's shortcut: whenever ``settled`` says yes, ``admit`` says yes and changes
    nothing (no latch moved, nothing counted)."""
    gate = RtpGate(MAX, Counter())
    media = sdp()
    for source, ssrc, size, new_sdp in packets:
        media = sdp() if new_sdp else media
        datagram = rtp(ssrc, b"x" * size)
        if gate.settled(media, source, len(datagram), ssrc):
            latch, dropped = gate.latch, Counter(gate.dropped)
            assert gate.admit(media, source, datagram)
            assert (gate.latch, gate.dropped) == (latch, dropped)
        else:
            gate.admit(media, source, datagram)
