"""Hand-made contract events for the mixer's tests and benchmark: real G.711 payloads.

``ulaw_to_pcm`` is the ITU-T G.711 mu-law expansion written out here, independent of FFmpeg, so a
test can say what the left channel must hold sample for sample.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import numpy as np

from callrec.avro.events import (
    AudioChunk,
    CallRecord,
    CallStatus,
    Leg,
    LegSummary,
    RtpPacket,
)

PACKET_SAMPLES = 160  # 20 ms of 8 kHz G.711
PACKET_US = 20_000
T0_US = int(time.time()) * 1_000_000  # calls happen now: the mixer skips long-expired calls


def ulaw_to_pcm(payload: bytes) -> np.ndarray:
    u = ~np.frombuffer(payload, dtype=np.uint8)
    exponent = (u >> 4) & 0x07
    mantissa = (u & 0x0F).astype(np.int32)
    magnitude = ((mantissa << 3) + 0x84) << exponent.astype(np.int32)
    sample = magnitude - 0x84
    return np.where(u & 0x80, -sample, sample).astype(np.int16)


def alaw_to_pcm(payload: bytes) -> np.ndarray:
    """ITU-T G.711 A-law expansion (even bits inverted, 3-bit segment, 4-bit step)."""
    a = np.frombuffer(payload, dtype=np.uint8) ^ 0x55
    step = ((a & 0x0F).astype(np.int32) << 4) + 8
    segment = ((a >> 4) & 0x07).astype(np.int32)
    magnitude = np.where(segment == 0, step, (step + 0x100) << np.maximum(segment - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


def new_call_key() -> str:
    return f"TestCluster:{uuid.uuid4().int % 10**12}"


def rtp_stream(
    count: int,
    *,
    start_us: int = T0_US,
    ts0: int = 1000,
    seq0: int = 100,
    ssrc: int = 0x1234,
    payload_type: int = 0,
    seed: int = 1,
    payload_bytes: int = PACKET_SAMPLES,
    ticks: int = PACKET_SAMPLES,
) -> list[RtpPacket]:
    """``count`` packets sent every 20 ms and received without jitter; payloads are random."""
    rng = np.random.default_rng(seed)
    return [
        RtpPacket(
            rtp_seq=(seq0 + i) % 65536,
            rtp_timestamp=(ts0 + i * ticks) % (1 << 32),
            ssrc=ssrc,
            payload_type=payload_type,
            marker=i == 0,
            arrival_time_us=start_us + i * PACKET_US,
            payload=rng.integers(0, 256, payload_bytes, dtype=np.uint8).tobytes(),
        )
        for i in range(count)
    ]


def chunked(
    packets: Sequence[RtpPacket],
    call_key: str,
    leg: Leg,
    leg_id: str,
    *,
    per_chunk: int = 10,
    codec: str = "PCMU",
    payload_type: int = 0,
    clock_rate: int = 8000,
    first_seq: int = 0,
) -> list[AudioChunk]:
    """Cut packets into AudioChunks of ``per_chunk`` packets (10 x 20 ms: the recorder's 200 ms)."""
    return [
        AudioChunk(
            producer_id="test-recorder",
            call_key=call_key,
            leg=leg,
            leg_id=leg_id,
            chunk_seq=first_seq + n,
            codec=codec,
            payload_type=payload_type,
            clock_rate=clock_rate,
            packets=list(packets[i : i + per_chunk]),
            packets_lost=0,
            packets_reordered=0,
            packets_duplicated=0,
            ssrc_changes=0,
            event_time=datetime.fromtimestamp(
                packets[min(i + per_chunk, len(packets)) - 1].arrival_time_us / 1e6, UTC
            ),
        )
        for n, i in enumerate(range(0, len(packets), per_chunk))
    ]


def leg_summary(chunks: Sequence[AudioChunk], segment: int = 0, codec: str = "PCMU") -> LegSummary:
    first = chunks[0]
    return LegSummary(
        leg=first.leg,
        leg_id=first.leg_id,
        segment=segment,
        recorder_id="rec-a",
        recorder_incarnation="1",
        codec=codec,
        started_at=datetime.fromtimestamp(first.packets[0].arrival_time_us / 1e6, UTC),
        chunk_count=len(chunks),
        last_chunk_seq=max(c.chunk_seq for c in chunks),
        packets_received=sum(len(c.packets) for c in chunks),
        packets_lost=0,
        payload_bytes=sum(len(p.payload) for c in chunks for p in c.packets),
    )


def call_record(
    call_key: str,
    legs: Iterable[LegSummary],
    *,
    status: CallStatus = CallStatus.COMPLETED,
    version: int = 3,
    started_us: int = T0_US,
    duration_us: int = 2_000_000,
    first_audio: tuple[int, int] | None = None,
) -> CallRecord:
    cluster, refci = call_key.split(":")
    return CallRecord(
        producer_id="test-callstate",
        call_key=call_key,
        version=version,
        status=status,
        abnormal_reason=None if status != CallStatus.ABNORMAL else "RECORDER_LOST",
        cluster_id=cluster,
        refci=refci,
        near_end_addr="1001",
        near_end_device="SEP6C416A369525",
        far_end_addr="1000",
        far_end_device="SEP38ED18552A12",
        started_at=datetime.fromtimestamp(started_us / 1e6, UTC),
        ended_at=None
        if status == CallStatus.ACTIVE
        else datetime.fromtimestamp((started_us + duration_us) / 1e6, UTC),
        legs=list(legs),
        first_audio_partition=first_audio[0] if first_audio else None,
        first_audio_offset=first_audio[1] if first_audio else None,
    )


def simple_call(
    call_key: str, packets: int = 50, far_delay_us: int = 0, **record: object
) -> tuple[list[AudioChunk], list[AudioChunk], CallRecord]:
    """A two-leg PCMU call: near and far chunks plus a terminal CallRecord for them."""
    near = chunked(rtp_stream(packets, seed=1), call_key, Leg.NEAR_END, "near-0")
    far = chunked(
        rtp_stream(packets, start_us=T0_US + far_delay_us, ssrc=0x5678, ts0=777, seed=2),
        call_key,
        Leg.FAR_END,
        "far-0",
    )
    duration = packets * PACKET_US + far_delay_us
    record_ = call_record(
        call_key, [leg_summary(near), leg_summary(far)], duration_us=duration, **record  # type: ignore[arg-type]
    )
    return near, far, record_


def payload_pcm(chunks: Iterable[AudioChunk]) -> np.ndarray:
    """Reference decoding of a leg's PCMU payloads in order."""
    return ulaw_to_pcm(b"".join(p.payload for c in chunks for p in c.packets))
