"""A call recorded by the real recorder from sipp (CUCM) ends as a sample-exact stereo WAV.

sipp plays both legs with the G.711 A-law pcap that ships with it; the recorder publishes the
chunks; the CallRecord is made here from the recorder's own events (the call-state worker's job).
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Awaitable, Iterator
from pathlib import Path

import numpy as np
import pytest
from minio import Minio

from callrec.avro.events import AudioChunk, GapCause, Leg, LegEnded, RecordingArchived
from callrec.emulator.audio import G711A_PCAP, pcap_rtp_payloads
from callrec.infra.kafka import KafkaBroker
from callrec.infra.s3 import S3Server
from tests.producers.harness import (
    EventTap,
    RecorderProcess,
    leg_keys,
    run_sipp,
    running_recorder,
    write_rtp_pcap,
)
from tests.sinks.factory import alaw_to_pcm, call_record, leg_summary
from tests.sinks.harness import (
    archived,
    mixer_env,
    publish,
    running,
    settings_from,
    wav_channels,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recorder(
    kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RecorderProcess]:
    data_dir = tmp_path_factory.mktemp("mixer-recorder") / "data"
    with running_recorder(data_dir, kafka.bootstrap) as proc:
        yield proc


async def record_with_sipp(
    kafka: KafkaBroker, s3: S3Server, minio_client: Minio, recorder: RecorderProcess,
    tmp_path: Path, pcap: Path, duration_ms: int, meanwhile: Awaitable[None] | None = None,
) -> tuple[RecordingArchived, np.ndarray, list[AudioChunk]]:
    """Both legs of one CUCM call played by sipp from ``pcap``: the archive event, the WAV's
    samples and the recorder's chunks."""
    cluster, refci = f"M{uuid.uuid4().hex[:6]}", str(uuid.uuid4().int % 10**8 + 10**8)
    key = f"{cluster}:{refci}"
    settings = settings_from(mixer_env(kafka, s3, tmp_path, cluster))
    tap = EventTap(kafka.bootstrap)
    await tap.start()
    try:
        async with running(settings):
            limit = duration_ms / 1000 + 30
            near, far, _ = await asyncio.gather(
                *(run_sipp("pcap_leg.xml", recorder, leg_keys(leg, refci, cluster, pcap=str(pcap)),
                           duration_ms, limit_s=limit) for leg in ("x-nearend", "x-farend")),
                meanwhile or asyncio.sleep(0),
            )  # fmt: skip
            assert near[0] == 0 and far[0] == 0, (near, far)
            ended = await tap.until(
                lambda evs: sum(isinstance(e, LegEnded) and e.call_key == key for e in evs) >= 2
            )
            assert all(e.packets_lost == 0 for e in ended if isinstance(e, LegEnded)
                       and e.call_key == key)  # fmt: skip
            chunks = [e for e in tap.of(key) if isinstance(e, AudioChunk)]
            by_leg = {
                leg: sorted((c for c in chunks if c.leg is leg), key=lambda c: c.chunk_seq)
                for leg in (Leg.NEAR_END, Leg.FAR_END)
            }
            record = call_record(key, [leg_summary(by_leg[leg], codec="PCMA") for leg in by_leg])
            await publish(kafka.bootstrap, [record])
            [event] = await archived(kafka.bootstrap, {key})
    finally:
        await tap.stop()
    rate, pcm = wav_channels(minio_client.get_object(settings.s3_bucket, event.object_key).read())
    assert rate == 8000
    return event, pcm, chunks


async def test_sipp_call_through_the_recorder_becomes_the_pcaps_audio_on_both_channels(
    kafka: KafkaBroker, s3: S3Server, minio_client: Minio, recorder: RecorderProcess,
    tmp_path: Path,
) -> None:
    event, pcm, _ = await record_with_sipp(kafka, s3, minio_client, recorder, tmp_path, G711A_PCAP,
                                        7600)  # fmt: skip
    assert not event.partial
    expected = alaw_to_pcm(b"".join(pcap_rtp_payloads(G711A_PCAP)))
    for channel in (0, 1):
        # A-law has no zero code: the leg's audio is the channel less its leading/trailing silence.
        np.testing.assert_array_equal(np.trim_zeros(pcm[:, channel]), expected)


async def test_a_recorder_frozen_for_4_s_mid_call_still_records_every_byte_in_place(
    kafka: KafkaBroker, s3: S3Server, minio_client: Minio, recorder: RecorderProcess,
    tmp_path: Path,
) -> None:
    """SIGSTOP below the RECORDER_LOST threshold: the kernel queues the RTP, nothing is lost,
    and the recording must be exactly the 35 s that were sent (issue 15)."""
    rng = np.random.default_rng(15)
    payloads = [rng.bytes(160) for _ in range(35 * 50)]
    pcap = write_rtp_pcap(tmp_path / "35s.pcap", payloads)
    assert recorder.proc is not None
    pid = recorder.proc.pid

    async def freeze() -> None:
        await asyncio.sleep(15)  # into the call: sipp's legs are up within a second
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(4)
        finally:
            os.kill(pid, signal.SIGCONT)

    event, pcm, chunks = await record_with_sipp(kafka, s3, minio_client, recorder, tmp_path,
                                                pcap, 35_500, freeze())  # fmt: skip
    for leg in (Leg.NEAR_END, Leg.FAR_END):  # stamped by the kernel, not when the recorder woke
        packets = [p for c in chunks if c.leg is leg for p in c.packets]
        first = min(packets, key=lambda p: p.rtp_seq)
        late_us = [p.arrival_time_us - first.arrival_time_us - (p.rtp_seq - first.rtp_seq) * 20_000
                   for p in packets]  # fmt: skip
        assert max(late_us) < 2_000_000, max(late_us)
    assert not event.partial
    assert {g.cause for g in event.gaps} <= {GapCause.NO_AUDIO}, event.gaps  # at the edges only
    expected = alaw_to_pcm(b"".join(payloads))
    for channel in (0, 1):
        np.testing.assert_array_equal(np.trim_zeros(pcm[:, channel]), expected)
