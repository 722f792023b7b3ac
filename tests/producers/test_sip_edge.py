"""The recorder's SIP and media edge under hostile input: the real recorder process, real sockets
on loopback (127.0.0.2 and 127.0.0.3 play other hosts), the session's real Kafka."""

from __future__ import annotations

import asyncio
import select
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from callrec.avro.events import AudioChunk, Event, LegEnded, LegStarted, RecorderHeartbeat
from callrec.infra.kafka import KafkaBroker
from callrec.infra.procs import free_port
from tests.producers.harness import (
    EventTap,
    RecorderProcess,
    options_request,
    running_recorder,
    send_udp,
)
from tests.producers.sip_peer import RtpSender, SipPeer

BURST = 10  # 127.0.0.1's INVITEs of the whole module fit in it


@pytest.fixture(scope="module")
def recorder(
    kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RecorderProcess]:
    base = free_port()
    with running_recorder(
        tmp_path_factory.mktemp("edge") / "data",
        kafka.bootstrap,
        CALLREC_RECORDER_RTP_PORTS=f"{base}-{base + 1}",  # two ports: a leaked one shows at once
        CALLREC_RECORDER_ALLOW="127.0.0.1,127.0.0.3",
        CALLREC_RECORDER_SIP_INVITE_RATE_PER_PEER="0.2",
        CALLREC_RECORDER_SIP_INVITE_BURST_PER_PEER=str(BURST),
        CALLREC_RECORDER_SIP_TCP_MAX_CONNECTIONS="3",
        CALLREC_RECORDER_SIP_TCP_MAX_CONNECTIONS_PER_PEER="2",
        CALLREC_RECORDER_SIP_TCP_IDLE_TIMEOUT_S="2",
        CALLREC_RECORDER_SIP_TCP_MESSAGE_TIMEOUT_S="1",
        CALLREC_RECORDER_SIP_PARSE_FAILURES_LOGGED_PER_MINUTE="3",
    ) as proc:
        yield proc


def counter(recorder: RecorderProcess, name: str) -> int:
    """A SIP counter of the status file (rewritten every second)."""
    sip = recorder.status().get("sip")
    return int(sip.get(name, 0)) if isinstance(sip, dict) else 0


def dropped(recorder: RecorderProcess) -> dict[str, int]:
    found = recorder.status().get("rtp_dropped")
    return dict(found) if isinstance(found, dict) else {}


def new_call() -> tuple[str, str, str]:
    """cluster, refci, call key."""
    cluster, refci = f"E{uuid.uuid4().hex[:6]}", str(uuid.uuid4().int % 10**8 + 10**8)
    return cluster, refci, f"{cluster}:{refci}"


def wait_until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.05)


def legs_complete(events: list[Event], key: str, legs: int) -> bool:
    """``legs`` legs of the call ended, and every chunk they counted is read (audio is another
    topic than the lifecycle: its chunks may come to the tap after the LegEnded)."""
    ends = [e for e in events if isinstance(e, LegEnded) and e.call_key == key]
    chunks = Counter(e.leg_id for e in events if isinstance(e, AudioChunk) and e.call_key == key)
    return len(ends) == legs and all(chunks[e.leg_id] == e.chunk_count for e in ends)


def test_strangers_get_503_never_403(recorder: RecorderProcess) -> None:
    before = counter(recorder, "forbidden")
    for method in ("OPTIONS", "INVITE"):
        stranger = options_request(recorder.sip_port, "127.0.0.2", method)
        reply = send_udp(stranger, recorder.sip_port, source_ip="127.0.0.2")
        assert reply.startswith(b"SIP/2.0 503"), reply
    wait_until(lambda: counter(recorder, "forbidden") == before + 2)


async def test_a_second_sender_changes_no_byte_of_the_recording(
    recorder: RecorderProcess, tap: EventTap
) -> None:
    cluster, refci, key = new_call()
    peer, phone = SipPeer(recorder.sip_port), RtpSender()
    strangers = [RtpSender("127.0.0.1"), RtpSender("127.0.0.2", phone.port)]
    before = dropped(recorder)
    try:
        reply, dialog = peer.invite(f"rtp-{refci}", "t1", refci, cluster, phone.port)
        assert dialog is not None, reply
        sent = []
        for n in range(60):
            payload = bytes([n % 251]) * 160
            phone.send(dialog.rtp_port, payload)
            sent.append(payload)
            for stranger in strangers:  # same host other port; other host, the SDP's port
                stranger.send(dialog.rtp_port, b"\xff" * 160, ssrc=phone.ssrc)
            phone.send(dialog.rtp_port, b"\xee" * 160, ssrc=0xBAD)  # the phone, a foreign SSRC
            phone.send(dialog.rtp_port, b"\xdd" * 1600)  # over the size cap
            await asyncio.sleep(0.02)  # paced like RTP: no socket buffer overflows
        assert peer.bye(dialog).startswith(b"SIP/2.0 200")
    finally:
        for sender in (peer, phone, *strangers):
            sender.close()
    events = await tap.until(lambda evs: legs_complete(evs, key, 1))
    chunks = sorted((e for e in events if isinstance(e, AudioChunk) and e.call_key == key),
                    key=lambda c: c.chunk_seq)  # fmt: skip
    recorded = b"".join(p.payload for c in chunks for p in c.packets)
    assert recorded == b"".join(sent)
    assert {p.ssrc for c in chunks for p in c.packets} == {phone.ssrc}
    [end] = [e for e in events if isinstance(e, LegEnded) and e.call_key == key]
    assert end.rtp_dropped == {"stranger": 120, "ssrc": 60, "oversize": 60}  # this leg's own

    def counted() -> bool:
        after = dropped(recorder)
        return {k: after.get(k, 0) - before.get(k, 0) for k in ("stranger", "ssrc", "oversize")} \
            == {"stranger": 120, "ssrc": 60, "oversize": 60}  # fmt: skip

    wait_until(counted)
    total = sum(dropped(recorder).values())
    await tap.until(lambda evs: any(  # and in the heartbeat, whence the exporter's metric
        isinstance(e, RecorderHeartbeat) and e.recorder_id == recorder.recorder_id
        and sum(e.rtp_dropped.values()) >= total for e in evs))  # fmt: skip


async def test_a_reused_call_id_is_a_second_leg_and_leaks_no_port(
    recorder: RecorderProcess, tap: EventTap
) -> None:
    """The recorder has two RTP ports: were a leg overwritten, its port would be gone for good
    and the second round would get 503."""
    for round_ in range(2):
        cluster, refci, key = new_call()
        peer = SipPeer(recorder.sip_port)
        phones = [RtpSender(), RtpSender()]
        try:
            dialogs = []
            for tag, phone, leg in zip(("a", "b"), phones, ("x-nearend", "x-farend"), strict=True):
                reply, dialog = peer.invite(f"same-{refci}", tag, refci, cluster, phone.port, leg)
                assert dialog is not None, (round_, reply)
                dialogs.append(dialog)
            assert dialogs[0].rtp_port != dialogs[1].rtp_port
            for n, (phone, dialog) in enumerate(zip(phones, dialogs, strict=True)):
                for _ in range(20):
                    phone.send(dialog.rtp_port, bytes([n + 1]) * 160)
            for dialog in dialogs:
                assert peer.bye(dialog).startswith(b"SIP/2.0 200")
        finally:
            for sender in (peer, *phones):
                sender.close()
        events = await tap.until(lambda evs, key=key: legs_complete(evs, key, 2))
        started = [e for e in events if isinstance(e, LegStarted) and e.call_key == key]
        assert len({e.leg_id for e in started}) == 2
        assert {e.sip_call_id for e in started} == {f"same-{refci}"}
        for n, leg in enumerate(started):
            audio = b"".join(p.payload for e in events if isinstance(e, AudioChunk)
                             and e.leg_id == leg.leg_id for p in e.packets)  # fmt: skip
            assert audio == bytes([n + 1]) * 160 * 20


def test_invites_beyond_a_peers_rate_get_503(recorder: RecorderProcess) -> None:
    """From 127.0.0.3, INVITEs without CUCM metadata: 400 while under the rate (no leg made),
    503 beyond it; 127.0.0.1 keeps its own budget."""
    codes = []
    for _ in range(BURST + 2):
        invite = options_request(recorder.sip_port, "127.0.0.3", "INVITE")
        codes.append(send_udp(invite, recorder.sip_port, source_ip="127.0.0.3")[:11])
    assert codes == [b"SIP/2.0 400"] * BURST + [b"SIP/2.0 503"] * 2, codes
    own = options_request(recorder.sip_port, "127.0.0.1", "INVITE")
    assert send_udp(own, recorder.sip_port).startswith(b"SIP/2.0 400")
    wait_until(lambda: counter(recorder, "rate_limited") >= 2)


def connect(recorder: RecorderProcess, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", recorder.sip_port), 5, (host, 0))
    sock.settimeout(5)
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(65535) == b""
    except ConnectionResetError:
        return True


def reset_at_accept(recorder: RecorderProcess, host: str = "127.0.0.1") -> bool:
    """Connected and closed before a word was said (the reset may beat connect's return)."""
    try:
        with connect(recorder, host) as sock:
            return closed_by_peer(sock)
    except ConnectionResetError:
        return True


def answers_options(sock: socket.socket, recorder: RecorderProcess, host: str) -> bool:
    sock.sendall(options_request(recorder.sip_port, host).replace(b"UDP", b"TCP"))
    return sock.recv(65535).startswith(b"SIP/2.0 200")


def test_tcp_refuses_strangers_and_connections_over_the_caps_at_accept(
    recorder: RecorderProcess,
) -> None:
    refused = counter(recorder, "tcp_refused")
    assert reset_at_accept(recorder, "127.0.0.2")
    with connect(recorder) as a, connect(recorder) as b:
        assert answers_options(a, recorder, "127.0.0.1")
        assert answers_options(b, recorder, "127.0.0.1")
        assert reset_at_accept(recorder)  # two per peer
        with connect(recorder, "127.0.0.3") as other:
            assert answers_options(other, recorder, "127.0.0.3")
            assert reset_at_accept(recorder, "127.0.0.3")  # three in all
    wait_until(lambda: counter(recorder, "tcp_refused") == refused + 3)
    wait_until(lambda: a_new_connection_is_served(recorder))  # the closed ones freed their slots


def a_new_connection_is_served(recorder: RecorderProcess) -> bool:
    try:
        with connect(recorder) as sock:
            return answers_options(sock, recorder, "127.0.0.1")
    except (ConnectionResetError, BrokenPipeError):
        return False


def two_kept_connections(recorder: RecorderProcess) -> tuple[socket.socket, socket.socket]:
    """Two connections the recorder took. A slot of an earlier test's connection is freed only
    when the recorder's thread sees that close, so a new one may still be refused at accept
    (reset at once): then wait until connections are served again and try anew."""
    deadline = time.monotonic() + 15
    while True:
        pair = connect(recorder), connect(recorder)
        reset, _, _ = select.select(pair, [], [], 0.5)  # a refusal comes at once; idle is 2 s
        if not reset:
            return pair
        for sock in pair:
            sock.close()
        assert time.monotonic() < deadline, "the recorder kept refusing a second connection"
        wait_until(lambda: a_new_connection_is_served(recorder))


def test_tcp_closes_idle_and_slow_connections(recorder: RecorderProcess) -> None:
    timed_out = counter(recorder, "tcp_timed_out")
    idle, slow = two_kept_connections(recorder)
    with idle, slow:
        opened = time.monotonic()
        message = options_request(recorder.sip_port).replace(b"UDP", b"TCP")
        slow.settimeout(0.2)
        closed = False
        for byte in message:  # a byte every 0.2 s: never idle, never finished
            try:
                slow.sendall(bytes([byte]))
                if slow.recv(65535) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                closed = True
                break
        assert closed and time.monotonic() - opened < 4  # message timeout 1 s (+ polling)
        assert closed_by_peer(idle)  # idle timeout 2 s
    # both counted (at least: the module's recorder is shared, another test's connection may
    # time out meanwhile; the closures themselves are asserted above)
    wait_until(lambda: counter(recorder, "tcp_timed_out") >= timed_out + 2)


def test_unparsable_sip_is_counted_and_logged_within_budget(recorder: RecorderProcess) -> None:
    before = counter(recorder, "unparsable")
    junk = [b"\xff\xfe not UTF-8 at all, and long enough for sippy \x81\x82",
            b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\nFrom"]
    for n in range(40):
        send_udp(junk[n % 2] + str(n).encode(), recorder.sip_port, wait=0.01)
    wait_until(lambda: counter(recorder, "unparsable") == before + 40)
    log = recorder.log_tail(100_000)
    assert "Traceback" not in log and "long enough for sippy" not in log  # no dumps of messages
    assert 1 <= log.count("unparsable SIP") <= 6  # 3 a minute; the test may straddle two
