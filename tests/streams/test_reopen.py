"""A verdict given before later facts is judged again on all of them: holds longer than the
segment window, recorders that stall and come back, late audio; live and replay agree."""

from __future__ import annotations

from callrec.avro.events import AbnormalReason, CallStatus, Leg
from callrec.streams.model import CallState
from callrec.streams.outputs import SNAPSHOT, Tally
from callrec.streams.recorders import RecordersView, mark_ready, observe
from callrec.streams.verdict import tick
from tests.streams.core import RULES, alive, fold, record, semantic, ticked
from tests.streams.factory import SECOND, Call, heartbeat

S = SECOND
SIDES = (Leg.NEAR_END, Leg.FAR_END)


def segment(call: Call, n: int, start: int, chunks: int) -> list:  # type: ignore[type-arg]
    """One INVITE pair: both legs start at ``start``, send ``chunks`` chunks, get BYE."""
    events: list = [call.started(side, start, segment=n) for side in SIDES]  # type: ignore[type-arg]
    for seq in range(chunks):
        events += [call.chunk(side, seq, segment=n, t=start + (seq + 1) * 200_000)
                   for side in SIDES]
    end = start + (chunks + 1) * 200_000
    events += [call.ended(side, end, segment=n, chunks=chunks) for side in SIDES]
    return events


def heartbeats(recorder: str, incarnation: str, start: int, stop: int,
               view: RecordersView | None = None) -> RecordersView:
    """One heartbeat a second from ``start`` to ``stop`` (absolute microseconds)."""
    view = view or mark_ready(RecordersView())
    for t in range(start, stop + 1, S):
        view = observe(view, heartbeat(recorder, incarnation, t, seq=t // S))
    return view


def test_a_new_segment_after_a_hold_longer_than_the_window_reopens_the_call() -> None:
    call = Call()
    state = fold(segment(call, 0, 0, chunks=5))
    first_end = call.t0 + 6 * 200_000
    judged_at = first_end + RULES.us(RULES.segment_window_s)
    done = ticked(state, judged_at, alive("rec-a", "inc-1", judged_at))
    assert done.status == CallStatus.COMPLETED and done.reopened == 0

    resumed = fold(segment(call, 1, 20 * S, chunks=5)[:2], done)  # the new INVITE pair
    assert resumed.rejudge and resumed.status == CallStatus.COMPLETED
    now = call.t0 + 20 * S + S
    reopened, out = tick(resumed, now, alive("rec-a", "inc-1", now), RULES)
    assert reopened is not None and reopened.status == CallStatus.ACTIVE
    assert reopened.reopened == 1 and reopened.version > done.version and SNAPSHOT in out
    assert Tally("calls_reopened_total", (("recorder", "rec-a"),), 1) in out
    snapshot = record(reopened)
    assert snapshot.segments == 2 and snapshot.reopened == 1 and snapshot.ended_at is None

    finished = fold(segment(call, 1, 20 * S, chunks=5)[2:], reopened)
    second_end = call.t0 + 20 * S + 6 * 200_000
    later = second_end + RULES.us(RULES.segment_window_s)
    final = ticked(finished, later, alive("rec-a", "inc-1", later))
    assert final.status == CallStatus.COMPLETED and final.reopened == 1
    assert final.verdict is not None and final.verdict.ended_at == second_end
    assert [leg.chunk_count for leg in record(final).legs] == [5, 5, 5, 5]


def test_a_recorder_that_comes_back_withdraws_recorder_lost() -> None:
    """A recorder frozen 8 s (SIGSTOP, a stalled disk) publishes the rest of the call after."""
    call = Call()
    t0 = call.t0
    before = [*[call.started(side) for side in SIDES],
              *[call.chunk(side, seq) for seq in range(25) for side in SIDES]]  # 0-5 s
    state = fold(before)
    view = heartbeats("rec-a", "inc-1", t0, t0 + 5 * S)
    lost = ticked(state, t0 + 11 * S, view)
    assert lost.verdict is not None and lost.verdict.reason == AbnormalReason.RECORDER_LOST

    back = heartbeats("rec-a", "inc-1", t0 + 13 * S, t0 + 14 * S, view)
    reopened = ticked(lost, t0 + 14 * S, back)  # heartbeats alone withdraw the verdict
    assert reopened.status == CallStatus.ACTIVE and reopened.reopened == 1
    assert all(leg.closure is None for leg in reopened.legs)

    rest = [call.chunk(side, seq) for seq in range(25, 180) for side in SIDES]  # to 36 s
    rest += [call.ended(side, 36 * S + 100_000, chunks=180) for side in SIDES]
    done_at = t0 + 36 * S + 100_000 + RULES.us(RULES.segment_window_s)
    view = heartbeats("rec-a", "inc-1", t0 + 15 * S, done_at, back)
    final = ticked(fold(rest, reopened), done_at, view)
    assert final.status == CallStatus.COMPLETED and final.reopened == 1
    assert [leg.chunk_count for leg in record(final).legs] == [180, 180]


def test_a_restarted_recorder_leaves_its_calls_abnormal() -> None:
    call = Call()
    state = fold([*[call.started(side) for side in SIDES], call.chunk(Leg.NEAR_END, 0)])
    view = heartbeats("rec-a", "inc-1", call.t0, call.t0 + S)
    lost = ticked(state, call.t0 + 8 * S, view)
    assert lost.verdict is not None and lost.verdict.reason == AbnormalReason.RECORDER_LOST
    restarted = heartbeats("rec-a", "inc-2", call.t0 + 9 * S, call.t0 + 20 * S, view)
    still = ticked(lost, call.t0 + 20 * S, restarted)
    assert still.verdict is not None and still.verdict.reason == AbnormalReason.RECORDER_LOST
    assert still.reopened == 0 and "restarted" in (still.verdict.detail or "")


def test_media_timeout_names_the_leg_that_went_silent_first() -> None:
    call = Call()
    events = [*[call.started(side) for side in SIDES],
              *[call.chunk(Leg.NEAR_END, seq) for seq in range(5)],  # to 1 s
              *[call.chunk(Leg.FAR_END, seq) for seq in range(10)]]  # to 2 s
    state = fold(events)
    for now in (call.t0 + 20 * S, call.t0 + 9 * S + 1):  # late or prompt, the same verdict
        out = ticked(state, now, alive("rec-a", "inc-1", now))
        assert out.verdict is not None and out.verdict.reason == AbnormalReason.MEDIA_TIMEOUT
        assert out.verdict.ended_at == call.t0 + S
        assert call.leg_id(Leg.NEAR_END) in (out.verdict.detail or "")


def silent_then_bye(call: Call) -> list:  # type: ignore[type-arg]
    """7 s of audio, then no RTP for 29 s (nothing on hold), then BYE on both legs."""
    events: list = [call.started(side) for side in SIDES]  # type: ignore[type-arg]
    events += [call.chunk(side, seq) for seq in range(35) for side in SIDES]
    events += [call.ended(side, 36 * S, chunks=35) for side in SIDES]
    return events


def test_a_bye_after_the_media_timed_out_keeps_the_timeout_live_and_in_replay() -> None:
    """Live, the worker heard nothing from Kafka from 8 s to 30 s (frozen broker) and reads the
    BYE before the silence: it must end where the replay, ticking on event time, ends."""
    call = Call()
    events = silent_then_bye(call)
    t0 = call.t0
    view = heartbeats("rec-a", "inc-1", t0, t0 + 40 * S)
    live_state = fold(events)
    heard_since = t0 + 30 * S
    waiting, _ = tick(live_state, t0 + 37 * S, view, RULES, heard_since)
    assert waiting is not None and waiting.verdict is None  # the spool may still be flushing
    live, _ = tick(waiting, t0 + 45 * S, view, RULES, heard_since)

    replay_state = fold([e for e in events if e.event_time < events[-2].event_time])
    replay_state = ticked(replay_state, t0 + 16 * S, view)  # event-time tick in the silence
    assert replay_state.verdict is not None
    replayed = ticked(fold(events[-2:], replay_state), t0 + 45 * S, view)

    assert live is not None and live.verdict is not None
    assert live.verdict.reason == AbnormalReason.MEDIA_TIMEOUT
    assert live.verdict.ended_at == t0 + 7 * S
    positions = {"first_audio_partition", "first_audio_offset"}  # this test's folds number them
    assert ({k: v for k, v in semantic(record(live)).items() if k not in positions}
            == {k: v for k, v in semantic(record(replayed)).items() if k not in positions})


def test_late_audio_of_a_judged_call_is_judged_again_and_published() -> None:
    """A recorder's spool replayed after the verdict: the missing chunks arrive, it completes."""
    call = Call()
    events = call.simple(chunks=3)
    late = [e for e in events if getattr(e, "chunk_seq", None) == 2]
    state = fold([e for e in events if e not in late])
    gave_up = call.t0 + 805_000 + RULES.us(RULES.missing_chunks_wait_s)
    short = ticked(state, gave_up, alive("rec-a", "inc-1", gave_up))
    assert short.verdict is not None and short.verdict.reason == AbnormalReason.OTHER

    arrived: CallState = fold(late, short)
    assert arrived.rejudge and arrived.unpublished
    now = gave_up + 10 * S
    final, out = tick(arrived, now, alive("rec-a", "inc-1", now), RULES)
    assert final is not None and final.status == CallStatus.COMPLETED and SNAPSHOT in out
    assert final.reopened == 1 and [leg.chunk_count for leg in record(final).legs] == [3, 3]


def test_a_whole_new_segment_read_late_still_counts_as_reopened() -> None:
    """A worker that reads segment 1 from INVITE to BYE only after its window passed goes
    straight from one COMPLETED to another: a new verdict, counted, not a detail refined."""
    call = Call()
    first_end = call.t0 + 6 * 200_000
    judged_at = first_end + RULES.us(RULES.segment_window_s)
    done = ticked(fold(segment(call, 0, 0, chunks=5)), judged_at, alive("rec-a", "inc-1",
                                                                        judged_at))
    late = fold(segment(call, 1, 20 * S, chunks=5), done)
    now = call.t0 + 40 * S
    final = ticked(late, now, alive("rec-a", "inc-1", now))
    assert final.status == CallStatus.COMPLETED and final.reopened == 1
    assert final.verdict is not None and final.verdict.ended_at == call.t0 + 20 * S + 1_200_000
