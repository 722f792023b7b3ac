"""A call recorded by the real recorder from sipp (CUCM) ends as a sample-exact stereo WAV.

sipp plays both legs with the G.711 A-law pcap that ships with it; the recorder publishes the
chunks; the CallRecord is made here from the recorder's own events (the call-state worker's job).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from minio import Minio

from callrec.avro.events import AudioChunk, Leg, LegEnded
from callrec.emulator.audio import G711A_PCAP, pcap_rtp_payloads
from callrec.infra.kafka import KafkaBroker
from callrec.infra.s3 import S3Server
from tests.producers.harness import (
    EventTap,
    RecorderProcess,
    leg_keys,
    run_sipp,
    running_recorder,
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


async def test_sipp_call_through_the_recorder_becomes_the_pcaps_audio_on_both_channels(
    kafka: KafkaBroker, s3: S3Server, minio_client: Minio, recorder: RecorderProcess,
    tmp_path: Path,
) -> None:
    cluster, refci = f"M{uuid.uuid4().hex[:6]}", str(uuid.uuid4().int % 10**8 + 10**8)
    key = f"{cluster}:{refci}"
    settings = settings_from(mixer_env(kafka, s3, tmp_path, cluster))
    tap = EventTap(kafka.bootstrap)
    await tap.start()
    try:
        async with running(settings):
            near, far = await asyncio.gather(
                run_sipp("pcap_leg.xml", recorder, leg_keys("x-nearend", refci, cluster), 7600),
                run_sipp("pcap_leg.xml", recorder, leg_keys("x-farend", refci, cluster), 7600),
            )
            assert near[0] == 0 and far[0] == 0, (near, far)
            await tap.until(
                lambda evs: sum(isinstance(e, LegEnded) and e.call_key == key for e in evs) >= 2
            )
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
    assert not event.partial
    rate, pcm = wav_channels(minio_client.get_object(settings.s3_bucket, event.object_key).read())
    expected = alaw_to_pcm(b"".join(pcap_rtp_payloads(G711A_PCAP)))
    assert rate == 8000
    for channel in (0, 1):
        # A-law has no zero code: the leg's audio is the channel less its leading/trailing silence.
        np.testing.assert_array_equal(np.trim_zeros(pcm[:, channel]), expected)
