"""``tick(state, now, recorders, rules) -> (state, outputs)``: the time-based rules of a call.

Only the tick ends a call, once, and a verdict is never undone (late facts still merge into the
legs, the status stays). The times a verdict records come from facts (the last audio, the last
refresh), not from when the tick ran, so a replay that ticks on event time agrees with the live
worker that ticked on the wall clock.

Rules, in order of precedence, for a call still ACTIVE:
  RECORDER_LOST    an open leg's recorder stopped heartbeating or restarted (new incarnation);
  SESSION_EXPIRED  an open leg had no re-INVITE/UPDATE within its Session-Expires (+ grace);
  MEDIA_TIMEOUT    an open leg, not on hold, had no audio for media_timeout_s;
  HALF_CALL        a segment's other leg never started within half_call_window_s
                   (or no LegStarted at all arrived for the events of the call);
  then, when every leg has ended, no new INVITE pair came within segment_window_s, and every
  chunk the LegEnded events announced has been folded (or missing_chunks_wait_s passed: the
  worker may be behind on rec.audio.v1, which Kafka does not order against rec.lifecycle.v1):
  COMPLETED        every leg ended with BYE or CANCEL;
  OTHER            announced chunks never arrived (the recording has holes);
  OTHER            a leg ended with CODEC_MISMATCH (CUCM's BYE with Q.850 cause 47: nothing was
                   recordable, which an operator must see);
  ENDED_WITHOUT_BYE a leg ended otherwise (RECORDER_SHUTDOWN, ERROR, MEDIA_TIMEOUT,
                   SESSION_EXPIRED or OTHER as the recorder reported it).
"""

from __future__ import annotations

from dataclasses import replace

from callrec.avro.events import AbnormalReason, CallStatus, Leg
from callrec.streams.fold import publish
from callrec.streams.model import CallState, Closure, LegFacts, Verdict
from callrec.streams.outputs import EVICT, SNAPSHOT, Output, Tally
from callrec.streams.projection import call_recorder, leg_started_at, segments
from callrec.streams.recorders import RecordersView, iso, lost_reason
from callrec.streams.rules import Rules

NORMAL_ENDS = frozenset({"BYE", "CANCEL"})
BOTH_SIDES = frozenset({Leg.NEAR_END, Leg.FAR_END})


def tick(
    state: CallState, now: int, recorders: RecordersView, rules: Rules, heard_since: int = 0
) -> tuple[CallState | None, tuple[Output, ...]]:
    """Judge the call at ``now``; None as the state means evict it.

    ``heard_since``: when the worker began hearing the call's partition without a gap (after a
    broker outage, a takeover). Absence of a fact (audio, a refresh, the other leg, a new
    segment) counts from then at the earliest: the recorders may still be flushing what they
    spooled meanwhile.
    """
    outputs: list[Output] = []
    if state.verdict is None:
        verdict = judge(state, now, recorders, rules, heard_since)
        if verdict is not None:
            state = _close(state, verdict)
            outputs.append(_verdict_tally(state, verdict))
            state = publish(state, now)
            outputs.append(SNAPSHOT)
    throttle = rules.us(rules.audio_snapshot_interval_s)
    if state.unpublished and (state.has_start or state.is_terminal):
        if now - state.last_snapshot_tick >= throttle:
            state = publish(state, now)
            outputs.append(SNAPSHOT)
    if state.verdict is not None and not state.unpublished:
        if now - state.verdict.ended_at > rules.us(rules.terminal_retention_s):
            return None, (*outputs, EVICT)
    return state, tuple(outputs)


def judge(
    state: CallState, now: int, recorders: RecordersView, rules: Rules, heard_since: int = 0
) -> Verdict | None:
    """The verdict the call deserves at ``now``, or None while it is still going."""
    if not state.has_start:
        first = state.first_seen_at or now
        if now - max(first, heard_since) >= rules.us(rules.half_call_window_s):
            ended = state.newest_fact_at or first
            return Verdict(CallStatus.ABNORMAL, AbnormalReason.HALF_CALL,
                           "no LegStarted arrived for any leg of the call", ended)
        return None
    open_legs = [leg for leg in state.legs if leg.is_open]
    return (
        _recorder_lost(open_legs, now, recorders, rules)
        or _session_expired(open_legs, now, rules, heard_since)
        or _media_timeout(open_legs, now, rules, heard_since)
        or _half_call(state, now, rules, heard_since)
        or _all_ended(state, open_legs, now, rules, heard_since)
    )


def last_activity(leg: LegFacts) -> int:
    """Newest sign of life of a leg: its start, audio, or a re-INVITE/UPDATE."""
    times = [t for t in (leg.audio.last_audio_at, leg.last_refresh_at) if t is not None]
    if leg.start is not None:
        times.append(leg.start.at)
    return max(times) if times else 0


def _recorder_lost(
    open_legs: list[LegFacts], now: int, recorders: RecordersView, rules: Rules
) -> Verdict | None:
    for leg in open_legs:
        if leg.start is None:
            continue
        why = lost_reason(
            recorders, leg.start.recorder_id, leg.start.recorder_incarnation,
            leg.start.at, now, rules,
        )
        if why is not None:
            detail = f"{why}; {leg.side.value} leg {leg.leg_id} was open"
            crashed_at = max(last_activity(open_leg) for open_leg in open_legs)
            return Verdict(CallStatus.ABNORMAL, AbnormalReason.RECORDER_LOST, detail, crashed_at)
    return None


def _session_expired(
    open_legs: list[LegFacts], now: int, rules: Rules, heard_since: int
) -> Verdict | None:
    for leg in open_legs:
        expires = leg.session_expires_s
        if expires is None or leg.start is None:
            continue
        refreshed = max(leg.start.at, leg.last_refresh_at or 0)
        deadline = refreshed + rules.us(expires)
        if now > max(deadline, heard_since) + rules.us(rules.session_grace_s):
            detail = (f"{leg.side.value} leg {leg.leg_id}: "
                      f"no refresh within Session-Expires {expires} s")
            return Verdict(CallStatus.ABNORMAL, AbnormalReason.SESSION_EXPIRED, detail, deadline)
    return None


def _media_timeout(
    open_legs: list[LegFacts], now: int, rules: Rules, heard_since: int
) -> Verdict | None:
    for leg in open_legs:
        if leg.hold is not None:
            on_hold = leg.on_hold
        else:
            on_hold = leg.start is not None and leg.start.media_direction == "inactive"
        if on_hold:
            continue
        if leg.hold is not None:
            since = max(last_activity(leg), leg.hold.at)
        else:
            since = last_activity(leg)
        if now - max(since, heard_since) >= rules.us(rules.media_timeout_s):
            detail = f"{leg.side.value} leg {leg.leg_id}: no audio since {iso(since)}"
            return Verdict(CallStatus.ABNORMAL, AbnormalReason.MEDIA_TIMEOUT, detail, since)
    return None


def _half_call(state: CallState, now: int, rules: Rules, heard_since: int) -> Verdict | None:
    by_segment: dict[int, list[LegFacts]] = {}
    for segment, leg in segments(state):
        by_segment.setdefault(segment, []).append(leg)
    fallback = state.first_seen_at or 0
    for segment, legs in sorted(by_segment.items()):
        sides = {leg.side for leg in legs}
        if sides == BOTH_SIDES:
            continue
        began = min(leg_started_at(leg, fallback) for leg in legs)
        window = rules.us(rules.half_call_window_s)
        if now - max(began, heard_since) >= window:
            missing = next(iter(BOTH_SIDES - sides))
            detail = f"segment {segment}: the {missing.value} leg never arrived"
            return Verdict(CallStatus.ABNORMAL, AbnormalReason.HALF_CALL, detail, began + window)
    return None


def _all_ended(
    state: CallState, open_legs: list[LegFacts], now: int, rules: Rules, heard_since: int
) -> Verdict | None:
    if open_legs:
        return None
    ends = [leg.end for leg in state.legs if leg.end is not None]
    last_end = max(end.at for end in ends)
    if now - max(last_end, heard_since) < rules.us(rules.segment_window_s):
        return None
    missing = [
        f"{leg.side.value} leg {leg.leg_id}: {leg.audio.chunk_count} of "
        f"{leg.end.chunk_count} announced chunks arrived"
        for leg in state.legs
        if leg.end is not None and leg.audio.chunk_count < leg.end.chunk_count
    ]
    if missing:
        if now - max(last_end, heard_since) < rules.us(rules.missing_chunks_wait_s):
            return None
        return Verdict(CallStatus.ABNORMAL, AbnormalReason.OTHER, "; ".join(missing), last_end)
    reasons = sorted({end.reason for end in ends})
    if all(reason in NORMAL_ENDS for reason in reasons):
        return Verdict(CallStatus.COMPLETED, None, None, last_end)
    odd = ", ".join(reason for reason in reasons if reason not in NORMAL_ENDS)
    reason = (
        AbnormalReason.OTHER if odd == "CODEC_MISMATCH" else AbnormalReason.ENDED_WITHOUT_BYE
    )
    return Verdict(CallStatus.ABNORMAL, reason, f"a leg ended with {odd}", last_end)


def _close(state: CallState, verdict: Verdict) -> CallState:
    reason = verdict.reason or AbnormalReason.OTHER
    legs = tuple(
        replace(leg, closure=Closure(verdict.ended_at, reason)) if leg.is_open else leg
        for leg in state.legs
    )
    return replace(state, legs=legs, verdict=verdict)


def _verdict_tally(state: CallState, verdict: Verdict) -> Tally:
    recorder = ("recorder", call_recorder(state))
    if verdict.status == CallStatus.COMPLETED:
        return Tally("calls_completed_total", (recorder,), 1)
    reason = (verdict.reason or AbnormalReason.OTHER).value
    return Tally("calls_abnormal_total", (recorder, ("reason", reason)), 1)
