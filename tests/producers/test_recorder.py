"""The recorder process against the real Kafka broker, with sipp playing CUCM."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from callrec.avro.events import (
    AudioChunk,
    Leg,
    LegChange,
    LegEnded,
    LegEndReason,
    LegStarted,
    LegUpdated,
    RecorderHeartbeat,
)
from callrec.emulator.audio import G711A_PCAP, pcap_rtp_payloads
from callrec.infra.kafka import KafkaBroker
from tests.producers.harness import (
    DTMF_PCAP,
    EventTap,
    RecorderProcess,
    leg_keys,
    options_request,
    run_sipp,
    running_recorder,
    send_udp,
)


@pytest.fixture(scope="module")
def recorder(
    kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RecorderProcess]:
    with running_recorder(
        tmp_path_factory.mktemp("recorder") / "data",
        kafka.bootstrap,
        CALLREC_RECORDER_ANSWER_DELAY_MS="150",
        CALLREC_RECORDER_MIN_SE_S="1",
    ) as proc:
        yield proc


def new_call() -> tuple[str, str]:
    return f"C{uuid.uuid4().hex[:6]}", str(uuid.uuid4().int % 10**8 + 10**8)


def ended(call_key: str, legs: int = 1):  # type: ignore[no-untyped-def]
    """``legs`` legs of the call ended, with every chunk each LegEnded announces: audio and
    lifecycle are separate topics, so an end can be read before the leg's last chunks."""
    def done(events: list) -> bool:  # type: ignore[type-arg]
        ends = [e for e in events if isinstance(e, LegEnded) and e.call_key == call_key]
        chunks = Counter(e.leg_id for e in events if isinstance(e, AudioChunk))
        return len(ends) >= legs and all(chunks[e.leg_id] >= e.chunk_count for e in ends)
    return done


def audio_of(events: list, leg: Leg) -> list[AudioChunk]:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, AudioChunk) and e.leg is leg]


@pytest.mark.parametrize("transport", ["u1", "t1"], ids=["udp", "tcp"])
async def test_two_leg_call_records_every_payload_byte(
    recorder: RecorderProcess, tap: EventTap, transport: str
) -> None:
    cluster, refci = new_call()
    key = f"{cluster}:{refci}"
    near, far = await asyncio.gather(
        run_sipp(
            "pcap_leg.xml",
            recorder,
            leg_keys("x-nearend", refci, cluster),
            8000,
            transport=transport,
        ),
        run_sipp(
            "pcap_leg.xml",
            recorder,
            leg_keys("x-farend", refci, cluster),
            8000,
            transport=transport,
        ),
    )
    assert near[0] == 0 and far[0] == 0, (near, far)
    await tap.until(ended(key, 2))
    events = tap.of(key)
    started = {e.leg: e for e in events if isinstance(e, LegStarted)}
    assert set(started) == {Leg.NEAR_END, Leg.FAR_END}
    s = started[Leg.NEAR_END]
    assert (s.cluster_id, s.refci, s.far_end_refci) == (cluster, refci, str(int(refci) - 1))
    assert (s.near_end_addr, s.far_end_addr) == ("1001", "1000")
    assert (s.near_end_device, s.far_end_device) == ("SEP6C416A369525", "SEP38ED18552A12")
    assert (s.codec, s.payload_type, s.telephone_event_pt) == ("PCMA", 8, 101)
    assert s.media_direction == "sendonly" and s.session_expires_s == 1800
    assert s.destination == "7878" and s.recorder_id == recorder.recorder_id
    assert s.remote_rtp_addr.startswith("127.0.0.1:")
    assert started[Leg.FAR_END].leg_id != s.leg_id
    expected = b"".join(pcap_rtp_payloads(G711A_PCAP))
    for leg in (Leg.NEAR_END, Leg.FAR_END):
        chunks = sorted(audio_of(events, leg), key=lambda c: c.chunk_seq)
        assert [c.chunk_seq for c in chunks] == list(range(len(chunks)))
        packets = [p for c in chunks for p in c.packets]
        assert b"".join(p.payload for p in packets) == expected  # all of it, in arrival order
        assert all(c.codec == "PCMA" and c.call_key == key for c in chunks)
        [end] = [e for e in events if isinstance(e, LegEnded) and e.leg is leg]
        assert end.reason is LegEndReason.BYE and end.q850_cause == 16
        assert end.chunk_count == len(chunks) and end.packets_received == len(packets)
        assert end.payload_bytes == len(expected)


async def test_telephone_events_are_kept_as_such(recorder: RecorderProcess, tap: EventTap) -> None:
    cluster, refci = new_call()
    keys = leg_keys("x-nearend", refci, cluster, pcap=str(DTMF_PCAP))
    rc, err = await run_sipp("pcap_leg.xml", recorder, keys, 1000)
    assert rc == 0, err
    await tap.until(ended(f"{cluster}:{refci}"))
    chunks = audio_of(tap.of(f"{cluster}:{refci}"), Leg.NEAR_END)
    packets = [p for c in sorted(chunks, key=lambda c: c.chunk_seq) for p in c.packets]
    assert [(p.payload_type, p.rtp_seq) for p in packets] == [(101, s) for s in range(7984, 7992)]
    assert packets[0].marker and packets[-1].payload == bytes.fromhex("018a08c0")
    # RFC 4733 2.5.1.4: the end packet is sent three times with one sequence number
    assert sum(c.packets_duplicated for c in chunks) == 2


async def test_codec_mismatch_ends_the_leg_with_cause_47(
    recorder: RecorderProcess, tap: EventTap
) -> None:
    cluster, refci = new_call()
    keys = leg_keys("x-nearend", refci, cluster, codecs="3", cause="47")
    rc, err = await run_sipp("pcap_leg.xml", recorder, keys, 0)
    assert rc == 0, err
    events = await tap.until(ended(f"{cluster}:{refci}"))
    [end] = [e for e in events if isinstance(e, LegEnded) and e.call_key == f"{cluster}:{refci}"]
    assert end.reason is LegEndReason.CODEC_MISMATCH and end.q850_cause == 47


async def test_refresh_hold_resume_and_update(recorder: RecorderProcess, tap: EventTap) -> None:
    cluster, refci = new_call()
    key = f"{cluster}:{refci}"
    rc, err = await run_sipp("cucm_changes.xml", recorder, leg_keys("x-nearend", refci, cluster))
    assert rc == 0, err
    await tap.until(ended(key))
    changes = [e.change for e in tap.of(key) if isinstance(e, LegUpdated)]
    assert changes == [
        LegChange.SESSION_REFRESH,
        LegChange.HOLD,
        LegChange.RESUME,
        LegChange.PARTY_CHANGE,
    ]
    [party] = [e for e in tap.of(key) if isinstance(e, LegUpdated) and e.sip_method == "UPDATE"]
    assert (party.far_end_addr, party.far_end_device) == ("2000", "SEP000000002000")


async def test_bye_on_one_leg_leaves_the_other_recording(
    recorder: RecorderProcess, tap: EventTap
) -> None:
    cluster, refci = new_call()
    key = f"{cluster}:{refci}"
    far = asyncio.create_task(
        run_sipp("pcap_leg.xml", recorder, leg_keys("x-farend", refci, cluster), 4000)
    )
    rc, err = await run_sipp("pcap_leg.xml", recorder, leg_keys("x-nearend", refci, cluster), 500)
    assert rc == 0, err
    await tap.until(ended(key, 1))
    far_id = next(
        e.leg_id for e in tap.of(key) if isinstance(e, LegStarted) and e.leg is Leg.FAR_END
    )
    near_ended_at = len(tap.events)
    await tap.until(
        lambda evs: any(
            isinstance(e, RecorderHeartbeat)
            and e.recorder_id == recorder.recorder_id
            and far_id in e.active_leg_ids
            for e in evs[near_ended_at:]
        )
    )
    assert [e.leg for e in tap.of(key) if isinstance(e, LegEnded)] == [Leg.NEAR_END]
    assert (await far)[0] == 0
    await tap.until(ended(key, 2))


async def test_the_heartbeat_says_the_spools_limits(
    recorder: RecorderProcess, tap: EventTap
) -> None:
    """The exporter's spool alert compares the spool with the size at which new calls get 503;
    the heartbeat carries both limits (the recorder's defaults here: 256 MiB and 1 GiB)."""
    beats = await tap.until(lambda evs: any(
        isinstance(e, RecorderHeartbeat) and e.recorder_id == recorder.recorder_id for e in evs))
    beat = next(e for e in beats if isinstance(e, RecorderHeartbeat)
                and e.recorder_id == recorder.recorder_id)
    assert (beat.spool_refuse_bytes, beat.spool_max_bytes) == (256 * 1024**2, 1024**3)


async def test_an_idle_recorders_status_shows_an_empty_backlog(
    recorder: RecorderProcess, tap: EventTap
) -> None:
    """Once Kafka has every event, status.json's backlog reads 0: written after the heartbeat,
    it counted that beat and never read 0, so no one could wait for a recorder to be sent."""
    await tap.until(lambda evs: any(
        isinstance(e, RecorderHeartbeat) and e.recorder_id == recorder.recorder_id for e in evs))
    await asyncio.to_thread(recorder.wait_for, lambda s: s.get("spool_backlog_events") == 0, 10)


async def test_cancel_before_answer_records_nothing(
    recorder: RecorderProcess, tap: EventTap
) -> None:
    cluster, refci = new_call()
    key = f"{cluster}:{refci}"
    rc, err = await run_sipp("cancel.xml", recorder, leg_keys("x-nearend", refci, cluster))
    assert rc == 0, err
    recorder.wait_for(lambda s: s.get("active_legs") == 0, 5)
    # A barrier: the call's far end, answered, lands on the same partition (same call key)
    # after anything the cancelled near end could have produced; once it has ended, all is read.
    rc, err = await run_sipp("pcap_leg.xml", recorder, leg_keys("x-farend", refci, cluster), 0)
    assert rc == 0, err
    await tap.until(lambda evs: any(isinstance(e, LegEnded) and e.call_key == key
                                    and e.leg is Leg.FAR_END for e in evs))  # fmt: skip
    lifecycle = [(type(e).__name__, getattr(e, "leg", None)) for e in tap.of(key)
                 if not isinstance(e, AudioChunk)]  # fmt: skip
    assert lifecycle == [("LegStarted", Leg.FAR_END), ("LegEnded", Leg.FAR_END)]


def test_sip_over_tcp_and_a_stream_that_cannot_be_framed(recorder: RecorderProcess) -> None:
    with socket.create_connection(("127.0.0.1", recorder.sip_port), timeout=3) as sock:
        sock.sendall(options_request(recorder.sip_port).replace(b"UDP", b"TCP"))
        assert sock.recv(65535).startswith(b"SIP/2.0 200")
        sock.sendall(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: no-length\r\n\r\n")
        assert sock.recv(65535) == b""  # closed: nothing after it could be trusted
    assert send_udp(options_request(recorder.sip_port), recorder.sip_port).startswith(
        b"SIP/2.0 200"
    )


def test_options_says_healthy_and_strangers_get_503(recorder: RecorderProcess) -> None:
    reply = send_udp(options_request(recorder.sip_port), recorder.sip_port)
    assert reply.startswith(b"SIP/2.0 200"), reply
    for method in ("OPTIONS", "INVITE"):
        stranger = options_request(recorder.sip_port, "127.0.0.2", method)
        reply = send_udp(stranger, recorder.sip_port, source_ip="127.0.0.2")
        assert reply.startswith(b"SIP/2.0 503"), reply  # never 403: CUCM counts it in service


@pytest.mark.parametrize(
    "datagram",
    [
        b"\x00" * 40,
        b"\xff\xfe garbage that is not SIP at all, not even text \x81\x82",
        b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;rport;branch=z9hG4bKx\r\nFrom",
        b"OPTIONS sip:x SIP/2.0\r\n" + b"X-Junk: " + b"a" * 60000 + b"\r\n\r\n",
        b"INVITE sip:7878@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bKq\r\n"
        b"From: <sip:1@h>;tag=1\r\nTo: <sip:2@h>\r\nCall-ID: q\r\nCSeq: 1 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n",
    ],
)
def test_bad_datagrams_get_400_or_are_dropped(recorder: RecorderProcess, datagram: bytes) -> None:
    reply = send_udp(datagram, recorder.sip_port, wait=0.5)
    assert reply == b"" or reply.startswith(b"SIP/2.0 4"), reply
    assert send_udp(options_request(recorder.sip_port), recorder.sip_port).startswith(
        b"SIP/2.0 200"
    )


@pytest.mark.slow
async def test_kafka_restart_mid_call_loses_and_duplicates_nothing(
    recorder: RecorderProcess, tap: EventTap, kafka: KafkaBroker
) -> None:
    cluster, refci = new_call()
    key = f"{cluster}:{refci}"
    legs = asyncio.gather(
        run_sipp("pcap_leg.xml", recorder, leg_keys("x-nearend", refci, cluster), 9000),
        run_sipp("pcap_leg.xml", recorder, leg_keys("x-farend", refci, cluster), 9000),
    )
    await asyncio.to_thread(recorder.wait_for, lambda s: s.get("active_legs") == 2, 10)
    await asyncio.to_thread(kafka.stop)  # mid-call: both legs answered
    await asyncio.to_thread(recorder.wait_for, lambda s: s.get("health") == "UNAVAILABLE", 10)
    await asyncio.to_thread(kafka.start)
    near, far = await legs
    assert near[0] == 0 and far[0] == 0, (near, far)
    await asyncio.to_thread(recorder.wait_healthy, 60)
    await tap.until(ended(key, 2), limit_s=60)
    expected = b"".join(pcap_rtp_payloads(G711A_PCAP))
    for leg in (Leg.NEAR_END, Leg.FAR_END):
        seqs = sorted(c.chunk_seq for c in audio_of(tap.of(key), leg))
        assert seqs == list(range(len(seqs))), "a chunk was lost or duplicated"
        [end] = [e for e in tap.of(key) if isinstance(e, LegEnded) and e.leg is leg]
        assert end.chunk_count == len(seqs)
        packets = [p for c in audio_of(tap.of(key), leg) for p in c.packets]
        assert b"".join(p.payload for p in sorted(packets, key=lambda p: p.rtp_seq)) == expected


async def test_a_leg_without_session_refresh_expires(
    recorder: RecorderProcess, tap: EventTap
) -> None:
    cluster, refci = new_call()
    keys = leg_keys("x-nearend", refci, cluster, se="2")
    dialog = asyncio.create_task(run_sipp("expiring_leg.xml", recorder, keys, limit_s=15))
    await tap.until(ended(f"{cluster}:{refci}"), limit_s=15)
    [end] = [e for e in tap.of(f"{cluster}:{refci}") if isinstance(e, LegEnded)]
    assert end.reason is LegEndReason.SESSION_EXPIRED
    rc, err = await dialog
    assert rc == 0, err  # the recorder hung up with a BYE


async def test_capacity_and_drain(kafka: KafkaBroker, tap: EventTap, tmp_path: Path) -> None:
    small = RecorderProcess(
        data_dir=tmp_path / "data",
        bootstrap=kafka.bootstrap,
        extra_env={"CALLREC_RECORDER_MAX_LEGS": "1", "CALLREC_RECORDER_DRAIN_TIMEOUT_S": "2"},
    )
    small.start()
    try:
        small.wait_healthy()
        cluster, refci = new_call()
        keys = leg_keys("x-nearend", refci, cluster)
        dialog = asyncio.create_task(run_sipp("expiring_leg.xml", small, keys, limit_s=12))
        await asyncio.to_thread(small.wait_for, lambda s: s.get("active_legs") == 1, 10)
        await asyncio.to_thread(small.wait_for, lambda s: s.get("health") == "UNAVAILABLE", 5)
        for method in ("OPTIONS", "INVITE"):
            reply = send_udp(options_request(small.sip_port, method=method), small.sip_port)
            assert reply.startswith(b"SIP/2.0 503"), reply
        assert await asyncio.to_thread(small.stop) == 0
        events = await tap.until(ended(f"{cluster}:{refci}"))
        [end] = [
            e for e in events if isinstance(e, LegEnded) and e.call_key == f"{cluster}:{refci}"
        ]
        assert end.reason is LegEndReason.RECORDER_SHUTDOWN and end.chunk_count > 0
        rc, err = await dialog
        assert rc == 0, err  # the draining recorder hung up with a BYE
    finally:
        small.stop()


def test_kafka_away_and_spool_full_are_reported_not_hidden(tmp_path: Path) -> None:
    isolated = RecorderProcess(
        data_dir=tmp_path / "data",
        bootstrap="127.0.0.1:9",  # nothing listens: Kafka is away from the start
        extra_env={
            "CALLREC_RECORDER_SPOOL_MAX_BYTES": "1500",
            "CALLREC_RECORDER_SPOOL_UNHEALTHY_BYTES": "500",
            "CALLREC_RECORDER_DRAIN_TIMEOUT_S": "0",
            "CALLREC_RECORDER_FLUSH_TIMEOUT_S": "1",
        },
    )
    isolated.start()
    try:
        isolated.wait_for(lambda s: s.get("spool_backlog_events", 0) >= 2, 15)
        reply = send_udp(options_request(isolated.sip_port), isolated.sip_port)
        assert reply.startswith(b"SIP/2.0 503") and b"Kafka unreachable" in reply, reply
        isolated.wait_for(lambda s: "spool full or not writable" in s.get("reasons", ()), 30)  # type: ignore[operator]
        status = isolated.status()
        assert status["lost_events"] > 0  # type: ignore[operator]
        assert "spool above its threshold" in status["reasons"]  # type: ignore[operator]
        assert status["spool_oldest_age_ms"] > 1000  # type: ignore[operator]
    finally:
        assert isolated.stop() == 0
