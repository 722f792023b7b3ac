"""Chunks -> timeline -> samples and gaps: the mixer's pure core with PyAV's G.711 decoder."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from callrec.avro.events import CallStatus, GapCause, Leg, RtpPacket
from callrec.sinks.recording import render_call
from callrec.sinks.timeline import RTP_TS_MODULUS, unwrap
from tests.sinks.factory import (
    PACKET_SAMPLES,
    T0_US,
    alaw_to_pcm,
    call_record,
    chunked,
    leg_summary,
    new_call_key,
    payload_pcm,
    rtp_stream,
    simple_call,
    ulaw_to_pcm,
)

KEY = "TestCluster:4242"


def gaps_of(rendered, leg):  # type: ignore[no-untyped-def]
    return [(g.start_ms, g.duration_ms, g.cause) for g in rendered.gaps if g.leg == leg]


def test_stereo_channels_are_each_legs_audio_sample_exact() -> None:
    near, far, record = simple_call(KEY, far_delay_us=100_000)
    rendered, failures = render_call(record, near + far, channels=2)
    assert not failures
    assert rendered.sample_rate == 8000
    np.testing.assert_array_equal(rendered.samples[: 50 * 160, 0], payload_pcm(near))
    assert not rendered.samples[:800, 1].any()
    np.testing.assert_array_equal(rendered.samples[800:, 1], payload_pcm(far))
    assert gaps_of(rendered, Leg.FAR_END) == [(0, 100, GapCause.NO_AUDIO)]
    assert gaps_of(rendered, Leg.NEAR_END) == [(1000, 100, GapCause.NO_AUDIO)]
    assert rendered.duration_ms == 1100
    assert not rendered.missing_audio


def test_mono_is_the_clipped_sum_of_both_legs() -> None:
    near, far, record = simple_call(KEY)
    rendered, _ = render_call(record, near + far, channels=1)
    expected = payload_pcm(near).astype(np.int32) + payload_pcm(far)
    np.testing.assert_array_equal(rendered.samples[:, 0], np.clip(expected, -32768, 32767))


def test_lost_packets_become_silence_of_their_length() -> None:
    packets = rtp_stream(30)
    kept = packets[:10] + packets[13:]
    chunks = chunked(kept, KEY, Leg.NEAR_END, "near-0")
    rendered, _ = render_call(call_record(KEY, [leg_summary(chunks)]), chunks, 2)
    left = rendered.samples[:, 0]
    reference = payload_pcm(chunked(packets, KEY, Leg.NEAR_END, "x"))
    np.testing.assert_array_equal(left[:1600], reference[:1600])
    assert not left[1600:2080].any()
    np.testing.assert_array_equal(left[2080:], reference[2080:])
    assert gaps_of(rendered, Leg.NEAR_END) == [(200, 60, GapCause.LOST_PACKETS)]
    assert rendered.missing_audio


def test_reordered_packets_and_timestamp_wraparound_keep_the_timeline() -> None:
    packets = rtp_stream(20, ts0=RTP_TS_MODULUS - 5 * PACKET_SAMPLES, seq0=65530)
    shuffled = [*packets[:7], packets[8], packets[7], *packets[9:]]
    chunks = chunked(shuffled, KEY, Leg.NEAR_END, "near-0")
    rendered, _ = render_call(call_record(KEY, [leg_summary(chunks)]), chunks, 2)
    np.testing.assert_array_equal(
        rendered.samples[:, 0], payload_pcm(chunked(packets, KEY, Leg.NEAR_END, "x"))
    )
    assert gaps_of(rendered, Leg.NEAR_END) == []


def test_telephone_events_are_not_decoded_and_leave_no_audio_gap() -> None:
    packets = rtp_stream(20)
    dtmf = [p.model_copy(update={"payload_type": 101, "payload": b"\x01\x0a\x00\xa0"})
            for p in packets[5:8]]
    chunks = chunked(packets[:5] + dtmf + packets[8:], KEY, Leg.NEAR_END, "near-0")
    rendered, failures = render_call(call_record(KEY, [leg_summary(chunks)]), chunks, 2)
    assert not failures
    assert not rendered.samples[800:1280, 0].any()
    assert gaps_of(rendered, Leg.NEAR_END) == [(100, 60, GapCause.NO_AUDIO)]


def test_hold_between_segments_is_silence_of_the_holds_length() -> None:
    first = chunked(rtp_stream(25, seed=1), KEY, Leg.NEAR_END, "near-0")
    resumed_at = T0_US + 500_000 + 3_000_000
    second = chunked(
        rtp_stream(25, start_us=resumed_at, ssrc=0x9999, ts0=55, seed=3), KEY, Leg.NEAR_END,
        "near-1",
    )
    record = call_record(KEY, [leg_summary(first), leg_summary(second, segment=1)])
    rendered, _ = render_call(record, first + second, 2)
    left = rendered.samples[:, 0]
    np.testing.assert_array_equal(left[:4000], payload_pcm(first))
    assert not left[4000:28000].any()
    np.testing.assert_array_equal(left[28000:], payload_pcm(second))
    assert (500, 3000, GapCause.HOLD) in gaps_of(rendered, Leg.NEAR_END)


def test_a_pause_inside_a_leg_is_no_audio_not_hold() -> None:
    before = rtp_stream(10)
    after = [  # the sender paused 4.8 s and its RTP clock ran on: sequence contiguous
        p.model_copy(update={"arrival_time_us": p.arrival_time_us + 5_000_000})
        for p in rtp_stream(10, ts0=1000 + 10 * PACKET_SAMPLES + 4_800 * 8, seq0=110, seed=5)
    ]
    chunks = chunked(before + after, KEY, Leg.NEAR_END, "near-0")
    rendered, _ = render_call(call_record(KEY, [leg_summary(chunks)]), chunks, 2)
    assert gaps_of(rendered, Leg.NEAR_END) == [(200, 4800, GapCause.NO_AUDIO)]
    assert len(rendered.samples) == 10 * 160 + 5 * 8000


def test_lost_chunks_inside_and_after_the_leg_are_gaps() -> None:
    packets = rtp_stream(50)
    chunks = chunked(packets, KEY, Leg.NEAR_END, "near-0")
    summary = leg_summary(chunks).model_copy(update={"last_chunk_seq": 6})
    kept = [c for c in chunks if c.chunk_seq != 2]
    rendered, _ = render_call(call_record(KEY, [summary]), kept, 2)
    assert gaps_of(rendered, Leg.NEAR_END) == [
        (400, 200, GapCause.LOST_CHUNKS),
        (1000, 400, GapCause.LOST_CHUNKS),
    ]
    assert rendered.duration_ms == 1400


def test_a_chunk_in_an_unknown_codec_is_an_undecodable_gap_and_the_rest_is_kept() -> None:
    chunks = chunked(rtp_stream(30), KEY, Leg.NEAR_END, "near-0")
    bad = chunks[1].model_copy(update={"codec": "iLBC"})
    rendered, failures = render_call(
        call_record(KEY, [leg_summary(chunks)]), [chunks[0], bad, chunks[2]], 2
    )
    assert [(f.leg_id, f.chunk_seq) for f in failures] == [("near-0", 1)]
    assert (200, 200, GapCause.UNDECODABLE) in gaps_of(rendered, Leg.NEAR_END)
    np.testing.assert_array_equal(rendered.samples[3200:, 0], payload_pcm([chunks[2]]))


def test_a_missing_side_and_a_call_without_audio() -> None:
    near, _, _ = simple_call(KEY)
    rendered, _ = render_call(call_record(KEY, [leg_summary(near)]), near, 2)
    assert gaps_of(rendered, Leg.FAR_END) == [(0, 1000, GapCause.MISSING_LEG)]
    empty, _ = render_call(
        call_record(KEY, [], status=CallStatus.ABNORMAL, duration_us=1_500_000), [], 2
    )
    assert empty.duration_ms == 1500 and empty.missing_audio


def test_g722_leg_beside_g711_gives_a_16khz_recording() -> None:
    near, _, _ = simple_call(KEY, packets=10)
    wide = chunked(
        rtp_stream(10, payload_type=9, ssrc=5), KEY, Leg.FAR_END, "far-0", codec="G722",
        payload_type=9,
    )
    record = call_record(KEY, [leg_summary(near), leg_summary(wide, codec="G722")])
    rendered, failures = render_call(record, near + wide, 2)
    assert not failures
    assert rendered.sample_rate == 16000
    assert len(rendered.samples) == 10 * 320
    np.testing.assert_array_equal(rendered.samples[::2, 0], payload_pcm(near))
    assert rendered.gaps == ()


def test_duplicate_chunks_from_a_replay_count_once() -> None:
    near, far, record = simple_call(new_call_key())
    once, _ = render_call(record, near + far, 2)
    twice, _ = render_call(record, near + far + near[:3], 2)
    np.testing.assert_array_equal(once.samples, twice.samples)


@given(st.integers(0, RTP_TS_MODULUS - 1), st.integers(-(2**30), 2**30))
def test_unwrap_recovers_any_step_under_half_the_range(start: int, step: int) -> None:
    wrapped = (start + step) % RTP_TS_MODULUS
    assert unwrap(start, wrapped, RTP_TS_MODULUS) == start + step


def test_reference_table_matches_the_whole_mulaw_alphabet() -> None:
    table = ulaw_to_pcm(bytes(range(256)))
    assert table[0] == -32124 and table[255] == 0 and table[128] == 32124
    packet = RtpPacket(rtp_seq=0, rtp_timestamp=0, ssrc=1, payload_type=0, marker=False,
                       arrival_time_us=T0_US, payload=bytes(range(256)))
    chunks = chunked([packet], KEY, Leg.NEAR_END, "near-0")
    rendered, _ = render_call(call_record(KEY, [leg_summary(chunks)]), chunks, 2)
    np.testing.assert_array_equal(rendered.samples[:, 0], table)


def test_the_alaw_table_matches_the_whole_alaw_alphabet() -> None:
    table = alaw_to_pcm(bytes(range(256)))
    assert table[0xD5] == 8 and table[0x55] == -8 and table[0xAA] == 32256
    packet = RtpPacket(rtp_seq=0, rtp_timestamp=0, ssrc=1, payload_type=8, marker=False,
                       arrival_time_us=T0_US, payload=bytes(range(256)))
    chunks = chunked([packet], KEY, Leg.NEAR_END, "near-0", codec="PCMA", payload_type=8)
    rendered, failures = render_call(call_record(KEY, [leg_summary(chunks, codec="PCMA")]),
                                     chunks, 2)
    assert not failures
    np.testing.assert_array_equal(rendered.samples[:, 0], table)


def test_g729_frames_are_decoded_and_a_sid_frame_is_no_audio() -> None:
    packets = rtp_stream(10, payload_type=18, payload_bytes=20)  # two 10-byte frames = 20 ms
    sid = packets[4].model_copy(update={"payload": packets[4].payload[:2]})  # G.729B SID
    chunks = chunked([*packets[:4], sid, *packets[5:]], KEY, Leg.NEAR_END, "near-0",
                     codec="G729", payload_type=18)
    rendered, failures = render_call(call_record(KEY, [leg_summary(chunks)]), chunks, 2)
    assert not failures
    assert len(rendered.samples) == 10 * 160
    assert gaps_of(rendered, Leg.NEAR_END) == [(80, 20, GapCause.NO_AUDIO)]
    assert rendered.samples[:640, 0].any() and not rendered.samples[640:800, 0].any()
