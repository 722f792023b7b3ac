"""The mixer worker end to end: real Kafka in, real S3 and rec.recordings.v1 out."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from pathlib import Path

import av
import numpy as np
from minio import Minio

from callrec.avro.events import CallStatus, GapCause, Leg
from callrec.avro.topics import AUDIO
from callrec.infra.kafka import KafkaBroker
from callrec.infra.s3 import S3Server
from tests.sinks.factory import (
    T0_US,
    call_record,
    chunked,
    leg_summary,
    payload_pcm,
    rtp_stream,
    simple_call,
)
from tests.sinks.harness import (
    archived,
    dead_letters,
    mixer_env,
    new_cluster,
    publish,
    publish_raw,
    running,
    settings_from,
    versions,
    wav_channels,
)


async def test_a_completed_call_becomes_a_stereo_wav_of_its_two_legs(
    kafka: KafkaBroker, s3: S3Server, minio_client: Minio, tmp_path: Path
) -> None:
    cluster = new_cluster()
    env = mixer_env(kafka, s3, tmp_path, cluster)
    settings = settings_from(env)
    key = f"{cluster}:19301625"
    near, far, done = simple_call(key, packets=60, far_delay_us=40_000)
    active = done.model_copy(update={"status": CallStatus.ACTIVE, "version": 1, "ended_at": None})
    async with running(settings):
        await publish(kafka.bootstrap, [active, *near, *far, done])
        [event] = await archived(kafka.bootstrap, {key})
    bucket = settings.s3_bucket
    data = minio_client.get_object(bucket, event.object_key).read()
    day = datetime.fromtimestamp(T0_US / 1e6, UTC)
    assert event.object_key == f"recordings/{day:%Y/%m/%d}/{cluster}%3A19301625.wav"
    assert hashlib.sha256(data).hexdigest() == event.sha256 and len(data) == event.size_bytes
    rate, pcm = wav_channels(data)
    assert rate == 8000 and pcm.shape == (60 * 160 + 320, 2)
    np.testing.assert_array_equal(pcm[: 60 * 160, 0], payload_pcm(near))
    np.testing.assert_array_equal(pcm[320:, 1], payload_pcm(far))
    assert not event.partial and event.call_status == CallStatus.COMPLETED
    stat = minio_client.stat_object(bucket, event.object_key)
    assert stat.metadata["x-amz-meta-sha256"] == event.sha256
    assert stat.metadata["x-amz-meta-call-key"] == key
    assert stat.metadata["x-amz-meta-near-end-addr"] == "1001"

    # A second worker group replaying the same topics finds the call archived: no second object.
    again = settings_from({**env, "CALLREC_MIXER_GROUP_ID": env["CALLREC_MIXER_GROUP_ID"] + "b"})
    async with running(again):
        events = await archived(kafka.bootstrap, {key}, within=8, settle=3)
    assert len(events) == 1
    assert versions(minio_client, bucket, event.object_key) == 1


async def test_abnormal_call_lost_packets_and_a_bad_chunk_still_give_a_partial_recording(
    kafka: KafkaBroker, s3: S3Server, minio_client: Minio, tmp_path: Path
) -> None:
    cluster = new_cluster()
    settings = settings_from(mixer_env(kafka, s3, tmp_path, cluster))
    key = f"{cluster}:77"
    packets = rtp_stream(40)
    near = chunked(packets[:12] + packets[15:], key, Leg.NEAR_END, "near-0")
    near[3] = near[3].model_copy(update={"codec": "iLBC"})  # a chunk nobody can decode
    record = call_record(key, [leg_summary(near)], status=CallStatus.ABNORMAL)
    async with running(settings):
        await publish_raw(kafka.bootstrap, AUDIO.name, key, b"not an event")
        await publish(kafka.bootstrap, [*near, record])
        [event] = await archived(kafka.bootstrap, {key})
        letters = await dead_letters(kafka.bootstrap, key, want=2)
    garbage, letter = sorted(letters, key=lambda d: d.error_type != "UndecodableEvent")
    assert garbage.error_type == "UndecodableEvent" and garbage.payload == b"not an event"
    assert event.partial and event.call_status == CallStatus.ABNORMAL
    assert event.abnormal_reason == "RECORDER_LOST"
    near_gaps = {(g.start_ms, g.duration_ms, g.cause) for g in event.gaps if g.leg == Leg.NEAR_END}
    assert (240, 60, GapCause.LOST_PACKETS) in near_gaps
    assert (660, 140, GapCause.UNDECODABLE) in near_gaps  # the last chunk: 7 packets
    assert letter.error_type == "UndecodableAudio" and "iLBC" in letter.reason
    _, pcm = wav_channels(minio_client.get_object(settings.s3_bucket, event.object_key).read())
    assert len(pcm) == 40 * 160  # the audio up to the end, silence where it was lost
    np.testing.assert_array_equal(pcm[23 * 160 : 33 * 160, 0], payload_pcm(near[2:3]))
    assert not pcm[33 * 160 :, 0].any()


async def test_a_hold_between_two_segments_is_silence_of_the_holds_length_in_flac(
    kafka: KafkaBroker, s3: S3Server, minio_client: Minio, tmp_path: Path
) -> None:
    cluster = new_cluster()
    settings = settings_from(
        mixer_env(kafka, s3, tmp_path, cluster, CALLREC_MIXER_FORMAT="flac",
                  CALLREC_MIXER_RETENTION_DAYS="3650")
    )
    key = f"{cluster}:5"
    resumed = T0_US + 500_000 + 2_500_000  # 25 packets, then 2.5 s on hold
    legs = []
    for side, name, ssrc in ((Leg.NEAR_END, "near", 1), (Leg.FAR_END, "far", 2)):
        before = chunked(rtp_stream(25, ssrc=ssrc, seed=ssrc), key, side, f"{name}-0")
        after = chunked(rtp_stream(25, start_us=resumed, ssrc=ssrc + 10, seed=ssrc + 10), key,
                        side, f"{name}-1")
        legs.append((before, after))
    record = call_record(
        key,
        [leg_summary(b) for b, _ in legs] + [leg_summary(a, segment=1) for _, a in legs],
        duration_us=3_500_000,
    ).model_copy(update={"segments": 2})
    async with running(settings):
        await publish(kafka.bootstrap, [c for b, a in legs for c in (*b, *a)] + [record])
        [event] = await archived(kafka.bootstrap, {key})
    assert event.format == "flac" and event.object_key.endswith("%3A5.flac")
    holds = [(g.leg, g.start_ms, g.duration_ms) for g in event.gaps if g.cause == GapCause.HOLD]
    assert holds == [(Leg.NEAR_END, 500, 2500), (Leg.FAR_END, 500, 2500)]
    assert not event.partial and event.duration_ms == 3500
    data = minio_client.get_object(settings.s3_bucket, event.object_key).read()
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray().reshape(-1, 2) for f in container.decode(audio=0)]  # packed
    pcm = np.concatenate(frames)
    near_before, near_after = legs[0]
    np.testing.assert_array_equal(pcm[:4000, 0], payload_pcm(near_before))  # FLAC is lossless
    assert not pcm[4000:24000].any()
    np.testing.assert_array_equal(pcm[24000:, 0], payload_pcm(near_after))
    retention = minio_client.get_object_retention(settings.s3_bucket, event.object_key)
    assert retention is not None and retention.mode == "COMPLIANCE"  # the default mode


async def test_calls_spilled_to_the_disk_spool_mix_the_same(
    kafka: KafkaBroker, s3: S3Server, minio_client: Minio, tmp_path: Path
) -> None:
    cluster = new_cluster()
    settings = settings_from(
        mixer_env(kafka, s3, tmp_path, cluster, CALLREC_MIXER_SPOOL_MEMORY_MB="0")
    )
    key = f"{cluster}:9"
    near, far, done = simple_call(key, packets=40)
    async with running(settings):
        await publish(kafka.bootstrap, [*near, *far, done])
        [event] = await archived(kafka.bootstrap, {key})
    _, pcm = wav_channels(minio_client.get_object(settings.s3_bucket, event.object_key).read())
    np.testing.assert_array_equal(pcm[:, 0], payload_pcm(near))
    np.testing.assert_array_equal(pcm[:, 1], payload_pcm(far))
    assert not list((tmp_path / "spool").glob("*.spool"))  # discarded once archived
