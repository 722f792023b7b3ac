"""The recorder process at its limits: a sender that stops RTP, a disk that fills up.

A recorder of its own per test (its settings differ from the shared one), the real Kafka broker,
sipp playing CUCM; the full disk is a small tmpfs the test mounts and fills.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from callrec.avro.events import (
    AudioChunk,
    Event,
    Leg,
    LegEnded,
    LegEndReason,
    RecorderHeartbeat,
)
from callrec.emulator.audio import G711A_PCAP, pcap_rtp_payloads
from callrec.infra.kafka import KafkaBroker
from tests.disks import SmallDisk, fill_disk
from tests.producers.harness import (
    DTMF_PCAP,
    EventTap,
    RecorderProcess,
    leg_keys,
    new_call,
    options_request,
    run_sipp,
    running_recorder,
    send_udp,
)


@pytest.fixture
async def tap(kafka: KafkaBroker) -> AsyncIterator[EventTap]:
    async with EventTap(kafka.bootstrap) as tap:
        yield tap


def leg_ended(call_key: str) -> Callable[[list[Event]], bool]:
    return lambda events: any(isinstance(e, LegEnded) and e.call_key == call_key for e in events)


async def test_a_silent_leg_and_an_endless_leg_are_hung_up(
    kafka: KafkaBroker, tap: EventTap, tmp_path: Path
) -> None:
    with running_recorder(
        tmp_path / "data",
        kafka.bootstrap,
        CALLREC_RECORDER_MEDIA_TIMEOUT_S="1.5",
        CALLREC_RECORDER_MAX_LEG_DURATION_S="4",
    ) as recorder:
        cluster, refci = new_call()
        silent, endless = f"{cluster}:{refci}", f"{cluster}:{int(refci) + 2}"
        # Session-Expires 1800 s on both. One sends 8 DTMF packets, then nothing; the other
        # streams 7 s of audio, longer than the leg may last.
        rcs = await asyncio.gather(
            run_sipp("expiring_leg.xml", recorder, leg_keys(
                "x-nearend", refci, cluster, pcap=str(DTMF_PCAP)), limit_s=15),
            run_sipp("expiring_leg.xml", recorder, leg_keys(
                "x-nearend", str(int(refci) + 2), cluster), limit_s=15),
        )  # fmt: skip
        assert [rc for rc, _ in rcs] == [0, 0], rcs  # sipp got the recorder's BYEs, answered
        await tap.until(lambda evs: all(leg_ended(k)(evs) for k in (silent, endless)))
        [timed_out] = [e for e in tap.of(silent) if isinstance(e, LegEnded)]
        assert timed_out.reason is LegEndReason.MEDIA_TIMEOUT
        assert timed_out.sip_reason == "no RTP for 1.5 s" and timed_out.chunk_count > 0
        [too_long] = [e for e in tap.of(endless) if isinstance(e, LegEnded)]
        assert too_long.reason is LegEndReason.OTHER
        assert too_long.sip_reason == "maximum leg duration of 4 s reached"
        assert 15 <= too_long.chunk_count < 30  # ~4 s of 200 ms chunks, not the pcap's 7 s
        recorder.wait_for(lambda s: s.get("active_legs") == 0, 5)


def audio_of(tap: EventTap, call_key: str) -> list[AudioChunk]:
    return [e for e in tap.of(call_key) if isinstance(e, AudioChunk)]


def reply_to(recorder: RecorderProcess, method: str) -> bytes:
    return send_udp(options_request(recorder.sip_port, method=method), recorder.sip_port)


async def test_a_full_disk_refuses_new_calls_keeps_the_live_one_and_recovers(
    kafka: KafkaBroker, tap: EventTap, small_disk: SmallDisk
) -> None:
    disk = small_disk(8 * 1024**2)  # the recorder's data dir: spool and status.json
    recorder = RecorderProcess(data_dir=disk, bootstrap=kafka.bootstrap)  # its log: beside it
    recorder.start()
    try:
        recorder.wait_healthy()
        cluster, refci = new_call()
        key = f"{cluster}:{refci}"
        call = asyncio.create_task(
            run_sipp("pcap_leg.xml", recorder, leg_keys("x-nearend", refci, cluster), 9000)
        )
        await asyncio.to_thread(recorder.wait_for, lambda s: s.get("active_legs") == 1, 10)
        filler = await asyncio.to_thread(fill_disk, disk)
        await asyncio.to_thread(
            recorder.wait_for, lambda s: "disk full" in str(s.get("reasons")), 10
        )
        options, invite = reply_to(recorder, "OPTIONS"), reply_to(recorder, "INVITE")
        assert options.startswith(b"SIP/2.0 503") and b"disk full" in options, options
        assert invite.startswith(b"SIP/2.0 503"), invite
        await tap.until(lambda evs: any(
            isinstance(e, RecorderHeartbeat) and e.recorder_id == recorder.recorder_id
            and "disk full" in e.health_reasons for e in evs
        ))  # fmt: skip
        # the live call goes on meanwhile: its audio reaches Kafka from memory
        held_from = len(audio_of(tap, key))
        await tap.until(lambda _: len(audio_of(tap, key)) >= held_from + 5)
        assert "disk full" in str(recorder.status().get("reasons"))
        assert not call.done()

        filler.unlink()
        await asyncio.to_thread(recorder.wait_healthy, 10)
        assert reply_to(recorder, "OPTIONS").startswith(b"SIP/2.0 200")
        rc, err = await call
        assert rc == 0, err
        await tap.until(leg_ended(key))
        [end] = [e for e in tap.of(key) if isinstance(e, LegEnded)]
        assert end.leg is Leg.NEAR_END and end.reason is LegEndReason.BYE
        # audio and lifecycle are two topics: wait for every chunk the LegEnded announced
        await tap.until(lambda _: len(audio_of(tap, key)) >= end.chunk_count)
        chunks = sorted(audio_of(tap, key), key=lambda c: c.chunk_seq)
        assert [c.chunk_seq for c in chunks] == list(range(len(chunks)))
        audio = b"".join(p.payload for c in chunks for p in c.packets)
        assert audio == b"".join(pcap_rtp_payloads(G711A_PCAP))  # every byte, before and after
        assert recorder.status()["lost_events"] == 0
    finally:
        assert recorder.stop() == 0, recorder.log_tail()
