"""``tick(state, now, recorders, rules) -> (state, outputs)``: the time-based rules of a call.

Only the tick ends a call. A verdict is the tick's judgement on the facts it has; when more
facts arrive afterwards (a new INVITE pair after a hold longer than the segment window, audio a
stalled recorder publishes when it resumes, the heartbeats of a recorder that came back), the
tick judges the call again on all its facts: it reopens (ACTIVE again, ``reopened`` counted) or
takes the new verdict. Every rule is a function of the facts (event times, the recorders'
heartbeats) and of ``now`` only through "has the deadline passed": what a verdict records (its
reason, the leg it names, its time) comes from facts, so a replay that ticks on event time ends
with the same verdict as the live worker that ticked on the wall clock. An absence rule judges
a leg as of its deadline: a leg still open when its media timed out stays timed out when its
BYE arrives later, whenever the worker happened to read that BYE.

Rules, in order of precedence:
  RECORDER_LOST    an open leg's recorder stopped heartbeating or restarted (new incarnation);
  SESSION_EXPIRED  a leg had no re-INVITE/UPDATE within its Session-Expires (+ grace) and had
                   not ended by then;
  MEDIA_TIMEOUT    a leg, not on hold, had no audio for media_timeout_s (counted from its last
                   audio, or from when its recorder came back after a stall) and had not ended
                   by then; of several, the one silent first;
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

from dataclasses import dataclass, replace

from callrec.avro.events import AbnormalReason, CallStatus, Leg
from callrec.streams.fold import publish
from callrec.streams.model import CallState, Closure, LegFacts, Verdict
from callrec.streams.outputs import EVICT, SNAPSHOT, Output, Tally
from callrec.streams.projection import call_recorder, leg_started_at, segments
from callrec.streams.recorders import RecordersView, back_since, iso, lost_reason
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
    spooled meanwhile. It delays a verdict; it never changes which one the facts give.
    """
    outputs: list[Output] = []
    if state.verdict is None:
        verdict = judge(state, now, recorders, rules, heard_since)
        if verdict is not None:
            state = _close(state, verdict)
            outputs.append(_verdict_tally(state, verdict))
            state = publish(state, now)
            outputs.append(SNAPSHOT)
    elif due(state, now, rules):
        # A lost recorder may come back (same incarnation) without any new fact of the call
        # yet: its heartbeats alone withdraw the verdict.
        state, judged = _rejudge(state, now, recorders, rules, heard_since)
        outputs.extend(judged)
    throttle = rules.us(rules.audio_snapshot_interval_s)
    if state.unpublished and (state.has_start or state.is_terminal):
        if now - state.last_snapshot_tick >= throttle:
            state = publish(state, now)
            outputs.append(SNAPSHOT)
    if state.verdict is not None and not state.unpublished:
        if now - state.verdict.ended_at > rules.us(rules.terminal_retention_s):
            return None, (*outputs, EVICT)
    return state, tuple(outputs)


def due(state: CallState, now: int, rules: Rules) -> bool:
    """Whether the tick has something to judge: an open call, a verdict new facts may undo, or
    a lost recorder that may still come back (until the call would be evicted)."""
    verdict = state.verdict
    if verdict is None or state.rejudge:
        return True
    lost = verdict.reason == AbnormalReason.RECORDER_LOST
    return lost and now - verdict.ended_at <= rules.us(rules.terminal_retention_s)


def judge(
    state: CallState, now: int, recorders: RecordersView, rules: Rules, heard_since: int = 0
) -> Verdict | None:
    """The verdict the call's facts give at ``now``, or None while it is still going.

    A verdict already given (its closures of open legs) is not a fact: the tick strips it
    before judging a call again.
    """
    if not state.has_start:
        first = state.first_seen_at or now
        if now - max(first, heard_since) >= rules.us(rules.half_call_window_s):
            ended = state.newest_fact_at or first
            return Verdict(CallStatus.ABNORMAL, AbnormalReason.HALF_CALL,
                           "no LegStarted arrived for any leg of the call", ended)
        return None
    open_legs = [leg for leg in state.legs if leg.end is None]
    candidates = [
        c
        for c in (
            _recorder_lost(open_legs, now, recorders, rules),
            _session_expired(state.legs, now, rules, heard_since),
            _media_timeout(state.legs, now, recorders, rules, heard_since),
            _half_call(state, rules, heard_since),
            _all_ended(state, open_legs, rules, heard_since),
        )
        if c is not None and c.fires_at <= now
    ]
    if not candidates:
        return None
    earliest = min(candidates, key=lambda c: c.fires_at)  # a tie keeps the earlier rule
    return earliest.verdict if earliest.ripe_at <= now else None


def without_verdict(state: CallState) -> CallState:
    """The call without its verdict: ACTIVE, every leg the verdict closed open again."""
    legs = tuple(replace(leg, closure=None) if leg.closure else leg for leg in state.legs)
    return replace(state, legs=legs, verdict=None)


def _rejudge(
    state: CallState, now: int, recorders: RecordersView, rules: Rules, heard_since: int
) -> tuple[CallState, list[Output]]:
    """Judge a call with a verdict again: keep it, reopen the call, or take the new one."""
    unjudged = without_verdict(state)
    fresh = judge(unjudged, now, recorders, rules, heard_since)
    old = state.verdict
    if fresh == old:
        return replace(state, rejudge=False), []
    outputs: list[Output] = []
    count = state.reopened
    # Withdrawn, or another verdict (another status, reason or end: a new segment moved it)
    # counts; only a detail refined with the rest unchanged (lost -> restarted) does not.
    same = (fresh.status, fresh.reason, fresh.ended_at) if fresh else None
    if old is None or same != (old.status, old.reason, old.ended_at):
        count += 1
        outputs.append(Tally("calls_reopened_total", (("recorder", call_recorder(state)),), 1))
        if fresh is not None:
            outputs.append(_verdict_tally(state, fresh))
    state = replace(unjudged, reopened=count, rejudge=False)
    if fresh is not None:
        state = _close(state, fresh)
    return publish(state, now), [*outputs, SNAPSHOT]


def last_activity(leg: LegFacts) -> int:
    """Newest sign of life of a leg: its start, audio, or a re-INVITE/UPDATE."""
    times = [t for t in (leg.audio.last_audio_at, leg.last_refresh_at) if t is not None]
    if leg.start is not None:
        times.append(leg.start.at)
    return max(times) if times else 0


def _recorder_lost(
    open_legs: list[LegFacts], now: int, recorders: RecordersView, rules: Rules
) -> Candidate | None:
    """The open leg whose recorder was lost first; the heartbeat feed already held back any
    silence that may be Kafka's, so the candidate is ripe as soon as it holds."""
    lost: list[tuple[int, str, str]] = []
    for leg in open_legs:
        if leg.start is None:
            continue
        found = lost_reason(
            recorders, leg.start.recorder_id, leg.start.recorder_incarnation,
            leg.start.at, now, rules,
        )
        if found is not None:
            why, lost_at = found
            lost.append((lost_at, leg.leg_id, f"{why}; {leg.side.value} leg {leg.leg_id} was open"))
    if not lost:
        return None
    lost_at, _, detail = min(lost)
    crashed_at = max(last_activity(open_leg) for open_leg in open_legs)
    verdict = Verdict(CallStatus.ABNORMAL, AbnormalReason.RECORDER_LOST, detail, crashed_at)
    return Candidate(lost_at, lost_at, verdict)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A rule's verdict with the time the facts make it true and the time it may be given.

    ``fires_at`` orders the rules: the one the facts made true first wins, so judging later
    (a worker behind, a replay) picks the same verdict. ``ripe_at`` is ``fires_at`` pushed
    past ``heard_since`` + the rule's threshold: absence is not believed before then.
    """

    fires_at: int
    ripe_at: int
    verdict: Verdict


def _absence(since: int, threshold: int, heard_since: int, verdict: Verdict) -> Candidate:
    return Candidate(since + threshold, max(since, heard_since) + threshold, verdict)


def _fired(since: int, threshold: int, now: int) -> bool:
    """Whether ``_absence(since, threshold, ...)`` fires by ``now``, which judge keeps only: a
    rule asks before it builds the verdict's detail."""
    return since + threshold <= now


def _session_expired(
    legs: tuple[LegFacts, ...], now: int, rules: Rules, heard_since: int
) -> Candidate | None:
    """The leg whose session expired first, once it has by ``now``: judge drops any candidate
    that has not fired, and building its detail for every live call at every tick was a third
    of the tick's time."""
    grace = rules.us(rules.session_grace_s)
    threshold = grace + 1
    expired: list[tuple[int, str, LegFacts, int]] = []
    for leg in legs:
        expires = leg.session_expires_s
        if expires is None or leg.start is None:
            continue
        refreshed = max(leg.start.at, leg.last_refresh_at or 0)
        deadline = refreshed + rules.us(expires)
        if leg.end is not None and leg.end.at <= deadline + grace:
            continue  # ended (BYE, CANCEL, ...) before the session could expire
        expired.append((deadline, leg.leg_id, leg, expires))
    if not expired:
        return None
    deadline, _, leg, expires = min(expired, key=lambda e: (e[0], e[1]))
    if not _fired(deadline, threshold, now):
        return None
    detail = f"{leg.side.value} leg {leg.leg_id}: no refresh within Session-Expires {expires} s"
    verdict = Verdict(CallStatus.ABNORMAL, AbnormalReason.SESSION_EXPIRED, detail, deadline)
    return _absence(deadline, threshold, heard_since, verdict)


def _media_timeout(
    legs: tuple[LegFacts, ...], now: int, recorders: RecordersView, rules: Rules,
    heard_since: int,
) -> Candidate | None:
    """The leg silent first, once its silence is a timeout by ``now`` (see _session_expired)."""
    timeout = rules.us(rules.media_timeout_s)
    silent: list[tuple[int, str, LegFacts]] = []
    for leg in legs:
        if leg.hold is not None:
            on_hold = leg.on_hold
        else:
            on_hold = leg.start is not None and leg.start.media_direction == "inactive"
        if on_hold:
            continue
        since = max(last_activity(leg), leg.first_seen_at or 0)  # a leg known by its end only
        if leg.hold is not None:
            since = max(since, leg.hold.at)
        recorder = leg.start.recorder_id if leg.start is not None else leg.audio.producer_id
        since = max(since, back_since(recorders, recorder))
        if leg.end is not None and leg.end.at < since + timeout:
            continue  # ended before its silence became a timeout
        silent.append((since, leg.leg_id, leg))
    if not silent:
        return None
    since, _, leg = min(silent, key=lambda s: (s[0], s[1]))
    if not _fired(since, timeout, now):
        return None
    detail = f"{leg.side.value} leg {leg.leg_id}: no audio since {iso(since)}"
    verdict = Verdict(CallStatus.ABNORMAL, AbnormalReason.MEDIA_TIMEOUT, detail, since)
    return _absence(since, timeout, heard_since, verdict)


def _half_call(state: CallState, rules: Rules, heard_since: int) -> Candidate | None:
    by_segment: dict[int, list[LegFacts]] = {}
    for segment, leg in segments(state):
        by_segment.setdefault(segment, []).append(leg)
    fallback = state.first_seen_at or 0
    window = rules.us(rules.half_call_window_s)
    for segment, legs in sorted(by_segment.items()):
        sides = {leg.side for leg in legs}
        if sides == BOTH_SIDES:
            continue
        began = min(leg_started_at(leg, fallback) for leg in legs)
        missing = next(iter(BOTH_SIDES - sides))
        detail = f"segment {segment}: the {missing.value} leg never arrived"
        verdict = Verdict(CallStatus.ABNORMAL, AbnormalReason.HALF_CALL, detail, began + window)
        return _absence(began, window, heard_since, verdict)
    return None


def _all_ended(
    state: CallState, open_legs: list[LegFacts], rules: Rules, heard_since: int
) -> Candidate | None:
    if open_legs:
        return None
    ends = [leg.end for leg in state.legs if leg.end is not None]
    last_end = max(end.at for end in ends)
    missing = [
        f"{leg.side.value} leg {leg.leg_id}: {leg.audio.chunk_count} of "
        f"{leg.end.chunk_count} announced chunks arrived"
        for leg in state.legs
        if leg.end is not None and leg.audio.chunk_count < leg.end.chunk_count
    ]
    if missing:
        verdict = Verdict(CallStatus.ABNORMAL, AbnormalReason.OTHER, "; ".join(missing), last_end)
        return _absence(last_end, rules.us(rules.missing_chunks_wait_s), heard_since, verdict)
    reasons = sorted({end.reason for end in ends})
    if all(reason in NORMAL_ENDS for reason in reasons):
        verdict = Verdict(CallStatus.COMPLETED, None, None, last_end)
    else:
        odd = ", ".join(reason for reason in reasons if reason not in NORMAL_ENDS)
        why = AbnormalReason.OTHER if odd == "CODEC_MISMATCH" else AbnormalReason.ENDED_WITHOUT_BYE
        verdict = Verdict(CallStatus.ABNORMAL, why, f"a leg ended with {odd}", last_end)
    return _absence(last_end, rules.us(rules.segment_window_s), heard_since, verdict)


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
