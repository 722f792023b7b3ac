"""The worker's snapshot writer (snapshot_codec.py) writes exactly the contract's encoding of
``to_record``: for any call, folded in any order, ticked or not (verdicts, closed legs,
reopened), the same bytes, so consumers decode the same CallRecord."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from callrec.avro import codec
from callrec.avro.events import Leg
from callrec.streams.model import CallState
from callrec.streams.projection import to_record
from callrec.streams.recorders import RecordersView, mark_ready
from callrec.streams.snapshot_codec import encode_snapshot
from callrec.streams.verdict import tick
from tests.streams.core import RULES, fold, fold_positioned, live_view
from tests.streams.factory import SECOND, Call
from tests.streams.strategies import SEGMENT_US, reordered


def same_snapshot(state: CallState, producer_id: str) -> None:
    fast = encode_snapshot(state, producer_id)
    reference = to_record(state, producer_id)
    assert fast == codec.encode(reference)
    assert codec.decode(fast) == reference


@settings(max_examples=150, deadline=None)
@given(case=reordered(), after_us=st.integers(0, 6 * SEGMENT_US), recorders_up=st.booleans(),
       producer_id=st.text(max_size=12))
def test_any_call_is_written_as_the_contract_encodes_its_record(
    case: tuple, after_us: int, recorders_up: bool, producer_id: str,  # type: ignore[type-arg]
) -> None:
    call, _, shuffled = case
    state = fold_positioned(shuffled)
    same_snapshot(state, producer_id)
    # ticked: verdicts (completed, or abnormal with a reason and detail), closed legs
    now = call.t0 + after_us
    view = live_view(now) if recorders_up else mark_ready(RecordersView())
    ticked, _ = tick(state, now, view, RULES)
    if ticked is not None:
        same_snapshot(ticked, producer_id)


def test_a_call_with_audio_only_and_large_counters_is_written_as_the_contract_encodes_it() -> None:
    call = Call()
    state = fold([call.chunk(Leg.NEAR_END, 9_000, t=3 * SECOND)])
    huge = replace(state, version=2**40, reopened=70_000)
    same_snapshot(huge, "w\u00e9")
