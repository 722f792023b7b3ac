"""The timeline under late, bursty, jittered and reordered arrival: audio stays where RTP says.

Each case sends one continuous G.711 stream (20 ms packets, random payloads), delivers it on an
arrival schedule (a recorder that falls behind and catches up, a frozen recorder, jitter), cuts the
arrivals into 200 ms chunks as the recorder does, and checks the rendered channel byte for byte
against the payloads in sequence order (lost packets: silence of their length).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callrec.avro.events import AudioChunk, GapCause, Leg, RtpPacket
from callrec.sinks import entries, timeline
from callrec.sinks.packets import InMemoryPayloads, compact
from callrec.sinks.recording import render_call
from callrec.sinks.render import Rendered
from callrec.sinks.timeline import RTP_SEQ_MODULUS, RTP_TS_MODULUS, PlacedLeg, plan_leg
from tests.sinks.factory import (
    PACKET_SAMPLES,
    PACKET_US,
    T0_US,
    call_record,
    chunked,
    leg_summary,
    rtp_stream,
    ulaw_to_pcm,
)

KEY = "TestCluster:1515"
CHUNK_US = 200_000
PACKETS = 500  # 10 s


def delivered(packets: Sequence[RtpPacket], delays_us: Sequence[int]) -> list[RtpPacket]:
    """The packets as the recorder reads them: each late by its delay, in arrival order."""
    late = [
        p.model_copy(update={"arrival_time_us": p.arrival_time_us + d})
        for p, d in zip(packets, delays_us, strict=True)
    ]
    return sorted(late, key=lambda p: p.arrival_time_us)  # stable: ties keep the send order


def recorder_chunks(arrivals: Sequence[RtpPacket], leg_id: str = "near-0") -> list[AudioChunk]:
    """Cut arrivals as the recorder's chunker does: a chunk spans 200 ms from its first arrival."""
    groups: list[list[RtpPacket]] = []
    window_end = 0
    for p in arrivals:
        if not groups or p.arrival_time_us >= window_end:
            groups.append([])
            window_end = p.arrival_time_us + CHUNK_US
        groups[-1].append(p)
    chunks = []
    for n, group in enumerate(groups):
        [chunk] = chunked(group, KEY, Leg.NEAR_END, leg_id, per_chunk=len(group), first_seq=n)
        chunks.append(chunk)
    return chunks


def rendered_leg(chunks: list[AudioChunk]) -> Rendered:
    rendered, failures = render_call(call_record(KEY, [leg_summary(chunks)]), chunks, 2)
    assert not failures
    return rendered


def expected_pcm(packets: Sequence[RtpPacket], lost: frozenset[int] = frozenset()) -> np.ndarray:
    """The stream's audio in sequence order, a lost packet silence of its length."""
    pcm = [
        np.zeros(PACKET_SAMPLES, np.int16) if i in lost else ulaw_to_pcm(p.payload)
        for i, p in enumerate(packets)
    ]
    return np.concatenate(pcm)


def near_gaps(rendered: Rendered) -> list[tuple[int, int, GapCause]]:
    return [(g.start_ms, g.duration_ms, g.cause) for g in rendered.gaps if g.leg == Leg.NEAR_END]


def falls_behind(stall_us: int, start: int = 100, catch_up: int = 50) -> list[int]:
    """A recorder that drifts behind by ``stall_us`` over 150 packets, holds it, then bursts."""
    delays = []
    for i in range(PACKETS):
        if i < start:
            delays.append(0)
        elif i < start + 150:
            delays.append(stall_us * (i - start) // 150)
        elif i < PACKETS - catch_up:
            delays.append(stall_us)
        else:  # the backlog is read at once: everything queued arrives together
            burst_at = (PACKETS - catch_up) * PACKET_US + stall_us
            delays.append(max(0, burst_at - i * PACKET_US))
    return delays


def frozen(freeze_us: int, at: int = 200) -> list[int]:
    """A recorder paused for ``freeze_us``: what came meanwhile is read when it resumes."""
    resume_us = at * PACKET_US + freeze_us
    return [max(0, resume_us - i * PACKET_US) if i >= at else 0 for i in range(PACKETS)]


def jitter(spread_us: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(d) for d in rng.integers(0, spread_us, PACKETS)]


SCHEDULES = {
    "on time": [0] * PACKETS,
    **{f"drift {s} s, then a burst": falls_behind(s * 1_000_000) for s in (1, 2, 5, 10)},
    **{f"frozen {s} s": frozen(s * 1_000_000) for s in (1, 4, 10)},
    "jitter 0-60 ms (reordering)": jitter(60_000, 1),
    "jitter 0-3 s (heavy reordering)": jitter(3_000_000, 2),
    "drift 8 s plus jitter": [a + b for a, b in zip(falls_behind(8_000_000), jitter(80_000, 3),
                                                    strict=True)],
}


@pytest.mark.parametrize("schedule", SCHEDULES, ids=list(SCHEDULES))
@pytest.mark.parametrize("loss", [False, True], ids=["no loss", "loss"])
def test_a_continuous_stream_is_placed_byte_exact_whatever_the_arrival(
    schedule: str, loss: bool
) -> None:
    sent = rtp_stream(PACKETS, seed=7)
    lost = frozenset({37, 38, 39, 250, 251, 420} if loss else ())
    arrivals = [
        p for p in delivered(sent, SCHEDULES[schedule]) if p.rtp_seq - sent[0].rtp_seq not in lost
    ]
    rendered = rendered_leg(recorder_chunks(arrivals))
    np.testing.assert_array_equal(rendered.samples[:, 0], expected_pcm(sent, lost))
    expected_gaps = [(740, 60, GapCause.LOST_PACKETS), (5000, 40, GapCause.LOST_PACKETS),
                     (8400, 20, GapCause.LOST_PACKETS)] if loss else []  # fmt: skip
    assert near_gaps(rendered) == expected_gaps
    assert rendered.shifted_runs == 0


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 120).flatmap(
        lambda n: st.lists(st.integers(0, 10_000_000), min_size=n, max_size=n)
    ),
    st.integers(0, RTP_SEQ_MODULUS - 1),
    st.integers(0, RTP_TS_MODULUS - 1),
)
def test_any_arrival_schedule_of_a_continuous_stream_renders_the_payload_in_order(
    delays_us: list[int], seq0: int, ts0: int
) -> None:
    sent = rtp_stream(len(delays_us), seq0=seq0, ts0=ts0, seed=len(delays_us))
    rendered = rendered_leg(recorder_chunks(delivered(sent, delays_us)))
    np.testing.assert_array_equal(rendered.samples[:, 0], expected_pcm(sent))
    assert near_gaps(rendered) == []


@settings(max_examples=40, deadline=None)
@given(
    st.integers(3, 120).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 10_000_000), min_size=n, max_size=n),
            st.sets(st.integers(1, n - 2), max_size=n // 3),
        )
    )
)
def test_any_arrival_schedule_with_loss_renders_the_rest_in_place(
    schedule: tuple[list[int], set[int]],
) -> None:
    delays_us, lost = schedule
    sent = rtp_stream(len(delays_us), seed=len(delays_us))
    arrivals = [p for p in delivered(sent, delays_us) if p.rtp_seq - sent[0].rtp_seq not in lost]
    rendered = rendered_leg(recorder_chunks(arrivals))
    np.testing.assert_array_equal(rendered.samples[:, 0], expected_pcm(sent, frozenset(lost)))
    assert {cause for _, _, cause in near_gaps(rendered)} <= {GapCause.LOST_PACKETS}
    assert sum(ms for _, ms, _ in near_gaps(rendered)) == len(lost) * PACKET_US // 1000


def test_a_packet_of_the_old_ssrc_arriving_after_the_new_one_began_keeps_its_place() -> None:
    first = rtp_stream(50, seed=1)
    second = rtp_stream(50, start_us=T0_US + 1_000_000, ssrc=0x7777, ts0=9, seed=2)
    straggler = first[-1].model_copy(update={"arrival_time_us": second[3].arrival_time_us + 1})
    chunks = recorder_chunks(first[:-1] + second[:4] + [straggler] + second[4:])
    plan = plan_leg(chunks)
    assert plan is not None and len(plan.runs) == 2 and plan.shifted_runs == 0
    rendered = rendered_leg(chunks)
    np.testing.assert_array_equal(rendered.samples[:, 0], expected_pcm(first + second))


def test_a_new_ssrc_whose_arrival_overlaps_the_run_before_follows_it() -> None:
    first = rtp_stream(50, seed=1)  # 1 s, but read 300 ms late throughout: anchored at 0.3 s
    first = delivered(first, [300_000] * 50)
    second = rtp_stream(50, start_us=T0_US + 1_000_000, ssrc=0x7777, ts0=9, seq0=4000, seed=2)
    chunks = recorder_chunks(first + second)
    plan = plan_leg(chunks)
    assert plan is not None and plan.shifted_runs == 1 and len(plan.runs) == 2
    rendered = rendered_leg(chunks)
    np.testing.assert_array_equal(rendered.samples[:, 0], expected_pcm(first + second))
    assert rendered.shifted_runs == 1 and near_gaps(rendered) == []


def test_a_new_ssrc_after_a_pause_is_placed_by_arrival_as_no_audio() -> None:
    first = rtp_stream(50, seed=1)
    second = rtp_stream(50, start_us=T0_US + 3_000_000, ssrc=0x7777, ts0=9, seed=2)
    rendered = rendered_leg(recorder_chunks(first + second))
    left = rendered.samples[:, 0]
    np.testing.assert_array_equal(left[:8000], expected_pcm(first))
    assert not left[8000:24000].any()
    np.testing.assert_array_equal(left[24000:], expected_pcm(second))
    assert near_gaps(rendered) == [(1000, 2000, GapCause.NO_AUDIO)]


def test_a_timestamp_jump_without_a_sequence_jump_is_anchored_on_arrival() -> None:
    first = rtp_stream(50, seed=1)
    jumped = rtp_stream(50, start_us=T0_US + 1_000_000, seq0=150, ts0=123_456_789, seed=2)
    plan = plan_leg(recorder_chunks(first + jumped))
    assert plan is not None and len(plan.runs) == 2
    rendered = rendered_leg(recorder_chunks(first + jumped))
    np.testing.assert_array_equal(rendered.samples[:, 0], expected_pcm(first + jumped))


def test_silence_suppression_keeps_the_rtp_clock_when_arrival_agrees() -> None:
    talk = rtp_stream(25, seed=1)
    resumed = rtp_stream(25, start_us=T0_US + 1_500_000, seq0=125, ts0=1000 + 12_000, seed=2)
    chunks = recorder_chunks(delivered(talk + resumed, [0] * 25 + [400_000] * 25))
    plan = plan_leg(chunks)
    assert plan is not None and len(plan.runs) == 1  # 400 ms late is within the tolerance
    rendered = rendered_leg(chunks)
    assert near_gaps(rendered) == [(500, 1000, GapCause.NO_AUDIO)]
    np.testing.assert_array_equal(rendered.samples[12000:, 0], expected_pcm(resumed))


def packet_by_packet(chunks: list[AudioChunk]) -> PlacedLeg:
    """The same leg planned one entry per RTP packet (no spans): what spans must reproduce."""
    memory = InMemoryPayloads()
    ordered = sorted(chunks, key=lambda c: c.chunk_seq)
    return timeline._plan([compact(c, memory) for c in ordered], None, spans=False)


def same_plan(a: PlacedLeg | None, b: PlacedLeg) -> None:
    assert a is not None
    assert (a.runs, a.missing, a.lost_chunk_seqs, a.shifted_runs) == (
        b.runs, b.missing, b.lost_chunk_seqs, b.shifted_runs)
    assert [(c.chunk_seq, c.payload, c.base, c.samples) for c in a.chunks] == [
        (c.chunk_seq, c.payload, c.base, c.samples) for c in b.chunks]


def test_chunks_of_contiguous_packets_are_planned_as_one_entry() -> None:
    chunks = recorder_chunks(rtp_stream(PACKETS, seed=7))
    memory = InMemoryPayloads()
    planned = entries.extend([compact(c, memory) for c in chunks], spans=True)
    assert len(chunks) == PACKETS // 10
    assert len(planned) == 1 and (planned[0].chunks, planned[0].count) == (len(chunks), PACKETS)
    broken = [compact(c, memory) for c in chunks]
    broken[20] = broken[20]._replace(span=None, rows=tuple(broken[20].packet_rows()))
    assert len(entries.extend(broken, spans=True)) == 1 + 10 + 1  # rows break the entry
    plan = plan_leg(chunks)
    same_plan(plan, packet_by_packet(chunks))
    assert plan is not None and len(plan.runs) == 1 and len(plan.runs[0].slots) == 1


@settings(max_examples=80, deadline=None)
@given(
    st.integers(2, 120).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 3_000_000), min_size=n, max_size=n),
            st.sets(st.integers(0, n - 1), max_size=n // 3),
            st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 3_000_000)), max_size=4),
        )
    ),
    st.integers(0, RTP_SEQ_MODULUS - 1),
    st.booleans(),
)
def test_spans_plan_exactly_as_packets_one_by_one(
    schedule: tuple[list[int], set[int], list[tuple[int, int]]], seq0: int, new_source: bool
) -> None:
    """Any arrival schedule, loss, packets delivered twice (a replay), a new SSRC half-way:
    the plan with spans is the per-packet plan, field for field."""
    delays_us, lost, again = schedule
    sent = rtp_stream(len(delays_us), seq0=seq0, seed=len(delays_us))
    if new_source:
        half = len(sent) // 2
        sent = sent[:half] + [p.model_copy(update={"ssrc": 0x7777, "rtp_timestamp": 5 + i * 160})
                              for i, p in enumerate(sent[half:])]
    kept = [p for i, p in enumerate(sent) if i not in lost]
    late = [sent[i].model_copy(update={"arrival_time_us": sent[i].arrival_time_us + d})
            for i, d in again]
    arrivals = sorted(delivered(kept, delays_us[: len(kept)]) + late,
                      key=lambda p: p.arrival_time_us)
    chunks = recorder_chunks(arrivals)
    same_plan(plan_leg(chunks), packet_by_packet(chunks))
