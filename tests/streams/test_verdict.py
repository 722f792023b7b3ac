"""tick(): each verdict, when it comes, what it records (reopening: test_reopen.py)."""

from __future__ import annotations

from callrec.avro.events import AbnormalReason, CallStatus, Leg, LegChange, LegEndReason
from callrec.streams.outputs import EVICT, SNAPSHOT, Tally
from callrec.streams.recorders import (
    RecordersView,
    mark_read_until,
    mark_ready,
    observe,
    up_gauges,
)
from callrec.streams.rules import Rules
from callrec.streams.verdict import tick
from tests.streams.core import RULES, alive, fold, record, ticked
from tests.streams.factory import SECOND, Call, heartbeat

S = SECOND


def both_started(call: Call, **kw: object) -> list:  # type: ignore[type-arg]
    return [call.started(Leg.NEAR_END, **kw), call.started(Leg.FAR_END, 10_000, **kw)]  # type: ignore[arg-type]


def test_bye_on_both_legs_completes_after_the_segment_window() -> None:
    call = Call()
    state = fold(call.simple(chunks=3))
    end = call.t0 + 800_000 + 5_000
    view = alive("rec-a", "inc-1", end + RULES.us(RULES.segment_window_s))
    assert ticked(state, end + RULES.us(RULES.segment_window_s) - 1, view).verdict is None
    done, out = tick(state, end + RULES.us(RULES.segment_window_s), view, RULES)
    assert done is not None and done.status == CallStatus.COMPLETED and SNAPSHOT in out
    assert Tally("calls_completed_total", (("recorder", "rec-a"),), 1) in out
    assert record(done).ended_at is not None and record(done).legs[1].end_reason == "BYE"


def test_the_verdict_waits_for_the_chunks_the_bye_announced() -> None:
    """A worker behind on rec.audio.v1 (after a failover) must not complete the call short."""
    call = Call()
    events = call.simple(chunks=3)
    late_chunk = next(e for e in events if getattr(e, "chunk_seq", None) == 2)
    state = fold([e for e in events if e is not late_chunk])
    end = call.t0 + 800_000 + 5_000
    waited = end + RULES.us(RULES.segment_window_s) + S
    assert ticked(state, waited, alive("rec-a", "inc-1", waited)).verdict is None
    done = ticked(fold([late_chunk], state), waited, alive("rec-a", "inc-1", waited))
    assert done.verdict is not None and done.status == CallStatus.COMPLETED

    gave_up = end + RULES.us(RULES.missing_chunks_wait_s)
    short = ticked(state, gave_up, alive("rec-a", "inc-1", gave_up))
    assert short.verdict is not None and short.verdict.reason == AbnormalReason.OTHER
    assert "2 of 3 announced chunks" in (short.verdict.detail or "")


def test_a_new_invite_pair_within_the_window_is_a_new_segment() -> None:
    call = Call()
    first = call.simple(chunks=2)
    resume = 4 * S
    second = [call.started(Leg.NEAR_END, resume, segment=1),
              call.started(Leg.FAR_END, resume + 10_000, segment=1)]
    state = fold(first)
    state = ticked(state, call.t0 + 3 * S, alive("rec-a", "inc-1", call.t0 + 3 * S))
    state = fold(second, state)
    snap = record(state)
    assert snap.status == CallStatus.ACTIVE and snap.segments == 2
    assert [leg.segment for leg in snap.legs] == [0, 0, 1, 1]


def test_recorder_silent_is_recorder_lost_at_its_last_sign_of_life() -> None:
    call = Call()
    state = fold([*both_started(call), call.chunk(Leg.NEAR_END, 0)])
    view = alive("rec-a", "inc-1", call.t0 + S)
    assert ticked(state, call.t0 + 5 * S, view).verdict is None
    lost = ticked(state, call.t0 + 7 * S, view)
    assert lost.verdict is not None and lost.verdict.reason == AbnormalReason.RECORDER_LOST
    assert lost.verdict.ended_at == call.t0 + 200_000  # the last chunk
    assert all(leg.end_reason == "RECORDER_LOST" for leg in record(lost).legs)


def test_a_new_incarnation_loses_the_old_ones_legs_at_once() -> None:
    call = Call()
    state = fold(both_started(call))
    view = observe(alive("rec-a", "inc-1", call.t0), heartbeat("rec-a", "inc-2", call.t0 + S))
    lost = ticked(state, call.t0 + 2 * S, view)
    assert lost.verdict is not None and lost.verdict.reason == AbnormalReason.RECORDER_LOST
    assert "inc-2" in (lost.verdict.detail or "")


def test_no_verdict_on_liveness_before_the_feed_caught_up() -> None:
    call = Call()
    state = fold([*both_started(call), call.chunk(Leg.NEAR_END, 0), call.chunk(Leg.FAR_END, 0)])
    assert ticked(state, call.t0 + 6 * S, RecordersView()).verdict is None


def test_silence_not_on_hold_is_media_timeout() -> None:
    call = Call()
    state = fold([*both_started(call), call.chunk(Leg.NEAR_END, 0), call.chunk(Leg.FAR_END, 0)])
    now = call.t0 + 200_000 + RULES.us(RULES.media_timeout_s)
    out = ticked(state, now, alive("rec-a", "inc-1", now))
    assert out.verdict is not None and out.verdict.reason == AbnormalReason.MEDIA_TIMEOUT


def test_silence_on_hold_is_fine() -> None:
    call = Call()
    state = fold([*both_started(call), call.updated(Leg.NEAR_END, S, LegChange.HOLD),
                  call.updated(Leg.FAR_END, S, LegChange.HOLD)])
    now = call.t0 + 30 * S
    assert ticked(state, now, alive("rec-a", "inc-1", now)).verdict is None


def test_no_refresh_within_session_expires_is_session_expired() -> None:
    call = Call()
    events = both_started(call, session_expires_s=10)
    state = fold([*events, call.updated(Leg.NEAR_END, 6 * S, LegChange.SESSION_REFRESH)])
    rules = Rules(media_timeout_s=3600)
    now = call.t0 + 11 * S + RULES.us(RULES.session_grace_s)
    out = ticked(state, now, alive("rec-a", "inc-1", now), rules)
    assert out.verdict is not None and out.verdict.reason == AbnormalReason.SESSION_EXPIRED
    assert "FAR_END" in (out.verdict.detail or "")  # the near end was refreshed at 6 s


def test_one_leg_alone_past_the_window_is_a_half_call() -> None:
    call = Call()
    state = fold([call.started(Leg.NEAR_END), call.chunk(Leg.NEAR_END, 0)])
    now = call.t0 + RULES.us(RULES.half_call_window_s)
    out = ticked(state, now, alive("rec-a", "inc-1", now))
    assert out.verdict is not None and out.verdict.reason == AbnormalReason.HALF_CALL
    assert "FAR_END" in (out.verdict.detail or "")


def test_audio_without_any_leg_started_is_a_half_call_too() -> None:
    call = Call()
    state = fold([call.chunk(Leg.NEAR_END, 0)])
    assert not state.has_start
    now = call.t0 + 10 * S
    out = ticked(state, now, alive("rec-a", "inc-1", now))
    assert out.verdict is not None and out.verdict.reason == AbnormalReason.HALF_CALL


def test_an_end_other_than_bye_is_ended_without_bye() -> None:
    call = Call()
    state = fold(call.simple(chunks=1, end=LegEndReason.RECORDER_SHUTDOWN))
    now = call.t0 + 10 * S
    out = ticked(state, now, alive("rec-a", "inc-1", now))
    assert out.verdict is not None and out.verdict.reason == AbnormalReason.ENDED_WITHOUT_BYE
    assert "RECORDER_SHUTDOWN" in (out.verdict.detail or "")


def test_codec_mismatch_is_abnormal_other() -> None:
    call = Call()
    state = fold(call.simple(chunks=0, end=LegEndReason.CODEC_MISMATCH))
    now = call.t0 + 10 * S
    out = ticked(state, now, alive("rec-a", "inc-1", now))
    assert out.verdict is not None and out.verdict.reason == AbnormalReason.OTHER


def test_a_terminal_call_is_evicted_after_its_retention() -> None:
    call = Call()
    state = fold(call.simple(chunks=1))
    view = mark_ready(RecordersView())
    done = ticked(state, call.t0 + 10 * S, view)
    assert done.verdict is not None
    retention = RULES.us(RULES.terminal_retention_s)
    keep, _ = tick(done, done.verdict.ended_at + retention, view, RULES)
    assert keep is not None
    gone, out = tick(done, done.verdict.ended_at + retention + 1, view, RULES)
    assert gone is None and EVICT in out


def test_audio_progress_publishes_at_most_every_interval() -> None:
    call = Call()
    state = fold([*both_started(call), call.chunk(Leg.NEAR_END, 0), call.chunk(Leg.NEAR_END, 1)])
    assert state.unpublished
    now = call.t0 + S
    view = alive("rec-a", "inc-1", now)
    first, out = tick(state, now, view, RULES)
    assert first is not None and SNAPSHOT in out and not first.unpublished
    more = fold([call.chunk(Leg.NEAR_END, 2)], first)
    again, out = tick(more, now + S, view, RULES)
    assert again is not None and SNAPSHOT not in out and again.unpublished


def test_recorder_up_gauge_shows_a_gap_in_recording() -> None:
    t = 1_000 * S
    view = observe(alive("rec-a", "inc-1", t), heartbeat("rec-b", "inc-1", t - 20 * S))
    assert up_gauges(view, t + S, RULES) == {"rec-a": 1, "rec-b": 0}
    assert up_gauges(view, t + 20 * S, RULES) == {"rec-a": 0, "rec-b": 0}
    assert up_gauges(RecordersView(), t, RULES) == {}


def test_silence_the_feed_has_not_read_past_is_not_a_lost_recorder() -> None:
    """A broker outage: the recorder spools its heartbeats; the feed has read up to the outage."""
    call = Call()
    state = fold(both_started(call))
    outage = call.t0 + S
    view = mark_read_until(alive("rec-a", "inc-1", outage), outage)
    later = outage + 30 * S
    rules = Rules(media_timeout_s=3600)  # here the audio partition's lag guard keeps it quiet
    assert ticked(state, later, view, rules).verdict is None
    assert up_gauges(view, later, RULES) == {"rec-a": 1}
    caught_up = mark_read_until(view, later)
    lost = ticked(state, later, caught_up, rules).verdict
    assert lost is not None and lost.reason == AbnormalReason.RECORDER_LOST


def test_after_an_outage_silence_counts_from_when_reading_resumed() -> None:
    """The broker is back: the recorder needs a moment to reconnect and flush its spool."""
    call = Call()
    state = fold(both_started(call))
    rules = Rules(media_timeout_s=3600)
    last_beat = call.t0 + S
    resumed = last_beat + 30 * S
    view = mark_read_until(alive("rec-a", "inc-1", last_beat), resumed + S, since=resumed)
    assert ticked(state, resumed + S, view, rules).verdict is None
    assert up_gauges(view, resumed + S, RULES) == {"rec-a": 1}
    gone = resumed + RULES.us(RULES.recorder_lost_after_s) + S
    lost = ticked(state, gone, mark_read_until(view, gone, since=resumed), rules).verdict
    assert lost is not None and lost.reason == AbnormalReason.RECORDER_LOST
