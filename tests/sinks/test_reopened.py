"""A call that reopens after its recording (a hold longer than the segment window, late audio)
gets a new version of its recording holding every segment, read back from Kafka after the
mixer's offsets moved past the first one; a kill -9 mid re-archive adds exactly one version."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from minio import Minio

from callrec.avro.events import (
    AudioChunk,
    CallRecord,
    CallStatus,
    Event,
    GapCause,
    Leg,
    RecordingArchived,
)
from callrec.avro.topics import AUDIO, RECORDINGS
from callrec.infra.kafka import KafkaBroker
from callrec.infra.s3 import S3Server
from callrec.sinks.settings import MixerSettings
from tests.sinks.factory import (
    PACKET_US,
    T0_US,
    call_record,
    chunked,
    leg_summary,
    payload_pcm,
    rtp_stream,
)
from tests.sinks.harness import (
    archived,
    committed,
    mixer_env,
    new_cluster,
    publish,
    running,
    settings_from,
    start_mixer,
    versions,
    wait_for_events,
    wav_channels,
)

PACKETS = 50  # 1 s a segment
HOLD_US = 20_000_000


def segment(key: str, n: int, start_us: int) -> tuple[list[AudioChunk], list[AudioChunk]]:
    """One INVITE pair's audio: near and far legs of ``PACKETS`` packets from ``start_us``."""
    near = chunked(rtp_stream(PACKETS, start_us=start_us, seed=10 + n, ssrc=0x100 + n),
                   key, Leg.NEAR_END, f"near-{n}")
    far = chunked(rtp_stream(PACKETS, start_us=start_us, seed=20 + n, ssrc=0x200 + n, ts0=555),
                  key, Leg.FAR_END, f"far-{n}")
    return near, far


def records(key: str, first_audio: tuple[int, int]) -> tuple[CallRecord, CallRecord, CallRecord]:
    """v3 COMPLETED after segment 0; v4 ACTIVE when segment 1 starts; v5 COMPLETED."""
    s0 = segment(key, 0, T0_US)
    s1 = segment(key, 1, T0_US + PACKETS * PACKET_US + HOLD_US)
    legs0 = [leg_summary(s0[0]), leg_summary(s0[1])]
    legs1 = [leg_summary(s1[0], segment=1), leg_summary(s1[1], segment=1)]
    first = call_record(key, legs0, version=3, duration_us=PACKETS * PACKET_US,
                        first_audio=first_audio)
    total = 2 * PACKETS * PACKET_US + HOLD_US
    reopened = call_record(key, legs0 + legs1, version=4, status=CallStatus.ACTIVE,
                           first_audio=first_audio).model_copy(update={"segments": 2,
                                                                       "reopened": 1})
    final = call_record(key, legs0 + legs1, version=5, duration_us=total,
                        first_audio=first_audio).model_copy(update={"segments": 2,
                                                                    "reopened": 1})
    return first, reopened, final


def expected_channel(first: list[AudioChunk], second: list[AudioChunk]) -> np.ndarray:
    """Segment 0, the hold as silence of its length, segment 1."""
    hold = np.zeros(HOLD_US * 8000 // 1_000_000, dtype=np.int16)
    return np.concatenate([payload_pcm(first), hold, payload_pcm(second)])


@dataclass
class Reopening:
    """A call whose first segment is archived (v1), and what reopens and completes it."""

    key: str
    settings: MixerSettings
    env: dict[str, str]
    first_audio: tuple[int, int]
    first_segment_end: int
    v1: RecordingArchived
    later: list[Event]
    """Segment 1's chunks with the v4 (ACTIVE) and v5 (COMPLETED) records among them."""


async def archive_first_segment(kafka: KafkaBroker, s3: S3Server, tmp_path: Path, refci: str
                                ) -> Reopening:
    cluster = new_cluster()
    env = mixer_env(kafka, s3, tmp_path, cluster)
    settings = settings_from(env)
    key = f"{cluster}:{refci}"
    s0 = segment(key, 0, T0_US)
    s1 = segment(key, 1, T0_US + PACKETS * PACKET_US + HOLD_US)
    async with running(settings):
        landed = await publish(kafka.bootstrap, [*s0[0], *s0[1]])
        first_audio = (landed[0].partition, landed[0].offset)
        first, reopened, final = records(key, first_audio)
        await publish(kafka.bootstrap, [first])
        [v1] = await archived(kafka.bootstrap, {key})
    return Reopening(key, settings, env, first_audio, landed[-1].offset, v1,
                     [*s1[0], reopened, *s1[1], final])


async def test_a_reopened_call_is_archived_again_with_every_segment(
    kafka: KafkaBroker, s3: S3Server, minio_client: Minio, tmp_path: Path
) -> None:
    call = await archive_first_segment(kafka, s3, tmp_path, "4242")
    key, settings, v1 = call.key, call.settings, call.v1
    # The mixer committed past segment 0's audio: a new worker cannot find it by reading on.
    position = await committed(kafka.bootstrap, settings.mixer_group_id, AUDIO.name,
                               call.first_audio[0])
    assert position is not None and position > call.first_segment_end

    async with running(settings):
        await publish(kafka.bootstrap, call.later)
        [v2] = await wait_for_version(kafka, key, 5)
    assert v2.supersedes_version_id == v1.version_id and v2.supersedes_call_version == 3
    assert v2.object_key == v1.object_key and v2.version_id != v1.version_id
    assert versions(minio_client, settings.s3_bucket, v1.object_key) == 2
    old = minio_client.get_object(settings.s3_bucket, v1.object_key, version_id=v1.version_id)
    assert len(wav_channels(old.read())[1]) == PACKETS * 160  # the first version is kept
    _, pcm = wav_channels(minio_client.get_object(settings.s3_bucket, v2.object_key).read())
    s0 = segment(key, 0, T0_US)
    s1 = segment(key, 1, T0_US + PACKETS * PACKET_US + HOLD_US)
    np.testing.assert_array_equal(pcm[:, 0], expected_channel(s0[0], s1[0]))
    np.testing.assert_array_equal(pcm[:, 1], expected_channel(s0[1], s1[1]))
    holds = [g for g in v2.gaps if g.cause == GapCause.HOLD]
    assert {(g.leg, g.start_ms, g.duration_ms) for g in holds} == {
        (Leg.NEAR_END, 1000, 20_000), (Leg.FAR_END, 1000, 20_000)}
    assert not v2.partial and v2.call_status == CallStatus.COMPLETED


async def wait_for_version(kafka: KafkaBroker, key: str, version: int) -> list[RecordingArchived]:
    """The announcements of the call's recording mixed from CallRecord ``version``."""
    found = await wait_for_events(
        kafka.bootstrap, RECORDINGS.name,
        lambda e: isinstance(e, RecordingArchived) and e.call_version == version, 1,
        {key.encode()}, within=60)
    return [e for e in found if isinstance(e, RecordingArchived)]


@pytest.mark.slow
async def test_a_mixer_killed_while_it_re_archives_adds_exactly_one_version(
    kafka: KafkaBroker, s3: S3Server, minio_client: Minio, tmp_path: Path
) -> None:
    call = await archive_first_segment(kafka, s3, tmp_path, "4343")
    key, settings, env, v1 = call.key, call.settings, call.env, call.v1
    mixer = start_mixer(env, tmp_path / "a")
    try:
        await publish(kafka.bootstrap, call.later)
        for _ in range(600):  # kill it the moment the new version is stored
            if versions(minio_client, settings.s3_bucket, v1.object_key) >= 2:
                break
            await asyncio.sleep(0.05)
        os.kill(mixer.pid, signal.SIGKILL)
        mixer.wait(10)
    finally:
        if mixer.poll() is None:
            mixer.kill()
            mixer.wait(10)
    assert versions(minio_client, settings.s3_bucket, v1.object_key) == 2

    again = start_mixer(env, tmp_path / "b")
    try:
        [v2, *more] = await wait_for_version(kafka, key, 5)
    finally:
        again.terminate()
        again.wait(30)
    assert versions(minio_client, settings.s3_bucket, v1.object_key) == 2
    assert all(e.version_id == v2.version_id for e in more)
    assert v2.supersedes_version_id == v1.version_id
