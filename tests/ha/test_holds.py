"""Holds and stalls through the whole site, compared byte by byte with the audio sent.

CUCM ends both recording legs with BYE when a party holds and sends a new INVITE pair with the
same x-refci when the conversation resumes; a recorder may freeze (a VM pause, a stalled disk)
and publish what it buffered when it resumes. Whatever the hold length or the stall, the last
recording of the call holds every segment's pcap audio in order, the hold as silence of its
length (a HOLD gap), and the call's record says if it was reopened. The call-state worker runs
with the production segment window (5 s) and detection thresholds.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator

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
from callrec.emulator.audio import looped
from callrec.emulator.cucm import Cucm
from callrec.emulator.routing import Distribution
from callrec.infra.kafka import KafkaBroker
from callrec.infra.s3 import S3Server
from tests.ha.harness import PINGS, Site, calls_placed_since, running_site
from tests.sinks.factory import alaw_to_pcm, chunked, payload_pcm, rtp_stream
from tests.sinks.harness import publish, wait_for_events, wav_channels
from tests.streams.factory import SECOND, Call, new_call_key
from tests.streams.harness import Reader

pytestmark = pytest.mark.slow
SEGMENT_S = 5.0  # each leg streams the emulator's looped payload from its ACK to its BYE
WINDOW_S = 5.0
RATE = 8000


@pytest.fixture(scope="module")
def site(kafka: KafkaBroker, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Site]:
    with running_site(kafka, s3, tmp_path_factory.mktemp("holds"),
                      {"CALLREC_STREAMS_SEGMENT_WINDOW_S": str(WINDOW_S)}) as site:
        yield site


@pytest.fixture
async def reader(kafka: KafkaBroker) -> AsyncIterator[Reader]:
    async with Reader(kafka.bootstrap) as reader:
        yield reader


def cucm(site: Site) -> Cucm:
    return Cucm(site.destinations(), Distribution.TOP_DOWN, PINGS, cluster=site.cluster)


def completed(segments: int) -> Callable[[CallRecord], bool]:
    def done(record: CallRecord) -> bool:
        return record.status == CallStatus.COMPLETED and record.segments == segments
    return done


async def final_recording(site: Site, reader: Reader, key: str,
                          done: Callable[[CallRecord], bool], within_s: float = 120.0,
                          ) -> tuple[CallRecord, RecordingArchived]:
    """The call's record once ``done``, and the recording mixed from that very version."""
    deadline = time.monotonic() + within_s
    while True:
        left = deadline - time.monotonic()
        records = await reader.wait_for([key], done, left)
        found = await wait_for_events(
            site.kafka.bootstrap, RECORDINGS.name,
            functools.partial(mixed_from, records[key].version), 1,
            {key.encode()}, max(1.0, deadline - time.monotonic()))
        await reader.poll()
        latest = reader.latest(key)
        recording = found[-1] if found else None
        if (latest is not None and isinstance(recording, RecordingArchived)
                and recording.call_version == latest.version):
            return latest, recording
        assert time.monotonic() < deadline, f"no recording of the final version: {latest}"


def mixed_from(version: int, event: Event) -> bool:
    return isinstance(event, RecordingArchived) and event.call_version >= version


def audio_blocks(channel: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each stretch of sound; A-law never decodes to 0, so zeros are the
    mixer's silence. Stretches closer than 0.5 s are one block."""
    sound = np.flatnonzero(channel)
    if len(sound) == 0:
        return []
    cuts = np.flatnonzero(np.diff(sound) > RATE // 2)
    starts = [sound[0], *sound[cuts + 1]]
    ends = [*sound[cuts] + 1, sound[-1] + 1]
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def read_wav(site: Site, minio: Minio, recording: RecordingArchived) -> np.ndarray:
    body = minio.get_object(recording.bucket, recording.object_key).read()
    rate, pcm = wav_channels(body)
    assert rate == RATE
    return pcm


def assert_segments_in_order(pcm: np.ndarray, recording: RecordingArchived, hold_s: float
                             ) -> None:
    """Each channel: what each segment's legs streamed (the looped payload, from its start, for
    the segment's length), the hold between them as silence listed as HOLD."""
    for channel, leg in ((0, "NEAR_END"), (1, "FAR_END")):
        blocks = audio_blocks(pcm[:, channel])
        assert len(blocks) == 2, (leg, blocks)
        for start, end in blocks:
            assert abs((end - start) / RATE - SEGMENT_S) < 1.0, (leg, blocks)
            np.testing.assert_array_equal(pcm[start:end, channel],
                                          alaw_to_pcm(looped(end - start)))
        silence_s = (blocks[1][0] - blocks[0][1]) / RATE
        assert abs(silence_s - hold_s) < 1.0, silence_s  # the pause between the INVITE pairs
        holds = [g for g in recording.gaps if g.cause == GapCause.HOLD and g.leg == leg]
        assert len(holds) == 1 and abs(holds[0].duration_ms / 1000 - silence_s) < 0.05, holds


@pytest.mark.parametrize("hold_s", [3.0, 20.0])
async def test_a_held_call_is_one_recording_of_both_segments(
    site: Site, reader: Reader, minio_client: Minio, hold_s: float
) -> None:
    site.ensure_up()
    async with cucm(site) as emulator:
        segments = await emulator.place_held_call(SEGMENT_S, hold_s)
    key = segments[0].call_key
    assert all(leg.recorder for segment in segments for leg in segment.legs), segments
    record, recording = await final_recording(site, reader, key, completed(2))
    assert record.reopened == (1 if hold_s > WINDOW_S else 0)
    assert recording.call_status == CallStatus.COMPLETED and not recording.partial
    if hold_s > WINDOW_S:
        assert recording.supersedes_version_id is not None
    assert_segments_in_order(read_wav(site, minio_client, recording), recording, hold_s)


async def test_a_hold_across_a_recorder_failover_is_one_recording(
    site: Site, reader: Reader, minio_client: Minio
) -> None:
    """Segment 1 on recorder A; A stops during the hold, so Top Down sends segment 2 to B."""
    site.ensure_up()
    hold_s = 12.0
    async with cucm(site) as emulator:
        async def stop_a() -> None:
            await asyncio.to_thread(site.recorders["A"].stop)
            await emulator.wait_out_of_service("A", 10)

        segments = await emulator.place_held_call(SEGMENT_S, hold_s, during_hold=stop_a)
    assert [{leg.recorder for leg in s.legs} for s in segments] == [{"A"}, {"B"}]
    record, recording = await final_recording(site, reader, segments[0].call_key,
                                              completed(2))
    assert {leg.recorder_id for leg in record.legs} == {
        site.recorders["A"].recorder_id, site.recorders["B"].recorder_id}
    assert_segments_in_order(read_wav(site, minio_client, recording), recording, hold_s)


@pytest.mark.parametrize("freeze_s", [8.0, 60.0])
async def test_a_frozen_recorder_that_resumes_loses_nothing_it_published(
    site: Site, reader: Reader, minio_client: Minio, freeze_s: float
) -> None:
    """SIGSTOP the recorder mid-call past RECORDER_LOST, then SIGCONT: the verdict is
    withdrawn (same incarnation) and the final recording holds every chunk it published."""
    site.ensure_up()
    await reader.poll(1.0)
    before = set(reader.records)
    recorder = site.recorders["A"].proc
    assert recorder is not None
    async with cucm(site) as emulator:
        placing = asyncio.create_task(emulator.place_calls(1, 12.0))
        [key] = await calls_placed_since(reader, before, site.cluster, 1)
        await asyncio.sleep(3.0)
        os.kill(recorder.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            lost = await reader.wait_for([key], lambda r: r.status == CallStatus.ABNORMAL, 15)
            assert lost[key].abnormal_reason == "RECORDER_LOST"
            await asyncio.sleep(max(0.0, freeze_s - (time.monotonic() - frozen_at)))
        finally:
            os.kill(recorder.pid, signal.SIGCONT)
        await placing
    record, recording = await final_recording(site, reader, key, completed(1), within_s=180)
    assert record.reopened >= 1, record
    published = await published_audio(site, key)
    pcm = read_wav(site, minio_client, recording)
    for channel, leg in ((0, "NEAR_END"), (1, "FAR_END")):
        heard = pcm[:, channel]
        np.testing.assert_array_equal(heard[heard != 0], published[leg])


async def published_audio(site: Site, key: str) -> dict[str, np.ndarray]:
    """Each leg's audio as the recorder published it on rec.audio.v1, in chunk order."""
    chunks = await wait_for_events(site.kafka.bootstrap, AUDIO.name,
                                   lambda e: isinstance(e, AudioChunk), 1, {key.encode()},
                                   within=30, settle=2)
    by_leg: dict[str, dict[int, bytes]] = {}
    for chunk in chunks:
        assert isinstance(chunk, AudioChunk)
        payload = b"".join(p.payload for p in sorted(chunk.packets, key=lambda p: p.rtp_seq))
        by_leg.setdefault(chunk.leg.value, {})[chunk.chunk_seq] = payload
    return {leg: alaw_to_pcm(b"".join(seqs[s] for s in sorted(seqs)))
            for leg, seqs in by_leg.items()}


async def test_a_five_minute_hold_reopens_the_call_and_keeps_every_segment(
    site: Site, reader: Reader, minio_client: Minio
) -> None:
    """The 5-minute hold in event time: segment 0 ends 5 minutes before segment 1 starts, as a
    recorder would have published them, through the site's call-state worker and mixer (a
    hold of minutes has the same shape as one of 20 s, only its wall time is saved)."""
    hold_us = 300 * SECOND
    call = Call(key=new_call_key(site.cluster), t0=(int(time.time()) - 305) * SECOND)
    segments = [held_segment(call, n, n * (hold_us + SECOND)) for n in (0, 1)]
    await publish(site.kafka.bootstrap, segments[0][0])
    first = await wait_for_events(site.kafka.bootstrap, RECORDINGS.name,
                                  lambda e: isinstance(e, RecordingArchived), 1,
                                  {call.key.encode()}, within=60)
    assert first, "segment 0 was never archived on its own"
    await publish(site.kafka.bootstrap, segments[1][0])
    record, recording = await final_recording(site, reader, call.key, completed(2))
    assert record.reopened == 1 and recording.supersedes_version_id is not None
    pcm = read_wav(site, minio_client, recording)
    hold = np.zeros(hold_us * RATE // SECOND, dtype=np.int16)
    for channel, side in enumerate((Leg.NEAR_END, Leg.FAR_END)):
        expected = np.concatenate(
            [payload_pcm(segments[0][1][side]), hold, payload_pcm(segments[1][1][side])])
        np.testing.assert_array_equal(pcm[:, channel], expected)
    holds = [g for g in recording.gaps if g.cause == GapCause.HOLD]
    assert sorted(g.duration_ms for g in holds) == [300_000, 300_000], recording.gaps


def held_segment(call: Call, n: int, start_us: int
                 ) -> tuple[list[Event], dict[Leg, list[AudioChunk]]]:
    """One INVITE pair as the recorder publishes it: 1 s of PCMU per leg, then BYE."""
    events: list[Event] = []
    chunks: dict[Leg, list[AudioChunk]] = {}
    for i, side in enumerate((Leg.NEAR_END, Leg.FAR_END)):
        packets = rtp_stream(50, start_us=call.t0 + start_us, seed=2 * n + i, ssrc=n * 2 + i + 1)
        chunks[side] = chunked(packets, call.key, side, call.leg_id(side, n))
        events += [call.started(side, start_us, segment=n), *chunks[side],
                   call.ended(side, start_us + SECOND + 20_000, segment=n, chunks=5)]
    return events, chunks
