"""Whatever arrives on the SIP port, the recorder answers 4xx or drops it, and keeps serving."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callrec.infra.kafka import KafkaBroker
from tests.producers.harness import (
    RecorderProcess,
    options_request,
    running_recorder,
    send_udp,
)

INVITE = (
    b"INVITE sip:7878@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bKfuzz\r\n"
    b'From: "A" <sip:1001@cucm;x-nearend;x-refci=1;x-nearendclusterid=F>;tag=1\r\n'
    b"To: <sip:7878@rec>\r\nCall-ID: fuzz\r\nCSeq: 1 INVITE\r\nContact: <sip:c@127.0.0.1:9>\r\n"
    b"Session-Expires: 1800\r\nContent-Type: application/sdp\r\nContent-Length: 40\r\n\r\n"
    b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 8\r\n"
)


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from([INVITE, INVITE.replace(b"INVITE", b"UPDATE")])))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at : at + draw(st.integers(1, 40))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=30))
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 200))]
    return bytes(data)


@pytest.fixture(scope="module")
def fuzzed(
    kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RecorderProcess]:
    with running_recorder(tmp_path_factory.mktemp("fuzz") / "data", kafka.bootstrap) as proc:
        yield proc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datagram=st.one_of(mangled(), st.binary(max_size=1500)))
def test_fuzzed_sip_never_wedges_the_recorder(fuzzed: RecorderProcess, datagram: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(datagram, ("127.0.0.1", fuzzed.sip_port))
    # whatever it made of that datagram, the recorder is alive and answers the next request
    reply = send_udp(options_request(fuzzed.sip_port), fuzzed.sip_port, wait=10)
    assert reply.startswith(b"SIP/2.0 200"), (datagram, fuzzed.log_tail())
    assert fuzzed.proc is not None and fuzzed.proc.poll() is None, fuzzed.log_tail()
