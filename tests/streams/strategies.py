"""Hypothesis strategies of the call-state tests: plausible calls, delivered out of order."""

from __future__ import annotations

from hypothesis import strategies as st

from callrec.avro.events import Event, Leg, LegChange, LegEndReason
from tests.streams.factory import SECOND, Call

SEGMENT_US = 20 * SECOND


@st.composite
def call_events(draw: st.DrawFn) -> tuple[Call, list[Event]]:
    """A plausible call: segments follow only BYE-ended ones; the last may end any way or not."""
    call = Call()
    events: list[Event] = []
    segments = draw(st.integers(1, 3))
    for segment in range(segments):
        base = segment * SEGMENT_US
        last = segment == segments - 1
        for side in (Leg.NEAR_END, Leg.FAR_END):
            t = base + draw(st.integers(0, 50_000))
            recorder = draw(st.sampled_from(["rec-a", "rec-b"]))
            events.append(call.started(side, t, segment=segment, recorder=recorder,
                                       session_expires_s=1800))
            chunks = draw(st.integers(0, 4))
            events += [call.chunk(side, seq, segment=segment, t=t + (seq + 1) * 200_000)
                       for seq in range(chunks)]
            for change in draw(st.lists(st.sampled_from(list(LegChange)), max_size=3)):
                events.append(call.updated(side, t + draw(st.integers(1, 900_000)), change,
                                           segment=segment, far_end_addr="2000"))
            if last and draw(st.booleans()):
                continue  # still open
            reason = draw(st.sampled_from(list(LegEndReason))) if last else LegEndReason.BYE
            events.append(call.ended(side, base + SECOND + draw(st.integers(0, 50_000)), reason,
                                     segment=segment, chunks=chunks))
    return call, events


@st.composite
def reordered(draw: st.DrawFn) -> tuple[Call, list[tuple[Event, int]], list[tuple[Event, int]]]:
    call, events = draw(call_events())
    original = [(event, offset) for offset, event in enumerate(events)]
    dups = draw(st.lists(st.sampled_from(original), max_size=5))
    redelivered = [(event, 1000 + n) for n, (event, _) in enumerate(dups)]
    shuffled = draw(st.permutations(original + redelivered))
    return call, original, shuffled
