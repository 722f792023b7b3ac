"""When the mixer mixes a call (calls.py), as a table; and when an archived call comes back."""

from __future__ import annotations

import pytest

from callrec.avro.events import CallStatus, Leg
from callrec.sinks.calls import Archived, Next, OpenCall, reopens
from tests.sinks.factory import call_record, chunked, leg_summary, rtp_stream

WAIT_S = 3.0


def open_call(status: CallStatus, *, have: int, reread: bool = False,
              ended_ago: float = 0.0, not_before: float = 0.0) -> OpenCall:
    """A call whose record counts 5 chunks of one leg, ``have`` of them spooled."""
    chunks = chunked(rtp_stream(50), "C:1", Leg.NEAR_END, "near-0")
    call = OpenCall("C:1", 0, reread_pending=reread, not_before=not_before)
    call.take_record(call_record("C:1", [leg_summary(chunks)], status=status), 100.0 - ended_ago)
    call.chunks = {("near-0", seq) for seq in range(have)}
    return call


@pytest.mark.parametrize(
    ("call", "caught_up", "expected"),
    [
        (open_call(CallStatus.ACTIVE, have=5), True, Next.WAIT),
        (open_call(CallStatus.COMPLETED, have=5), False, Next.WAIT),
        (open_call(CallStatus.COMPLETED, have=5), True, Next.MIX),
        (open_call(CallStatus.ABNORMAL, have=5), True, Next.MIX),
        (open_call(CallStatus.COMPLETED, have=4), True, Next.WAIT),
        (open_call(CallStatus.COMPLETED, have=4, ended_ago=WAIT_S), True, Next.MIX_INCOMPLETE),
        (open_call(CallStatus.COMPLETED, have=0, reread=True), True, Next.REREAD),
        (open_call(CallStatus.COMPLETED, have=0, reread=True), False, Next.WAIT),
        (open_call(CallStatus.COMPLETED, have=5, not_before=101.0), True, Next.WAIT),
    ],
    ids=["active", "behind on audio", "complete", "abnormal complete", "chunk missing",
         "chunk missing past the wait", "reopened: read back first", "reopened, behind",
         "failed mix backing off"],
)
def test_when_a_call_is_mixed(call: OpenCall, caught_up: bool, expected: Next) -> None:
    assert call.next_step(100.0, caught_up, WAIT_S) == expected


def test_a_reopened_record_makes_an_ended_call_active_again() -> None:
    call = open_call(CallStatus.COMPLETED, have=5)
    assert call.record is not None and call.ended_at is not None
    newer = call.record.model_copy(update={"version": 4, "status": CallStatus.ACTIVE})
    call.take_record(newer, 101.0)
    assert call.ended_at is None and call.next_step(101.0, True, WAIT_S) == Next.WAIT
    older = call.record.model_copy(update={"version": 2, "status": CallStatus.COMPLETED})
    call.take_record(older, 102.0)  # a stale snapshot changes nothing
    assert call.record is newer and call.ended_at is None


def test_only_a_newer_call_version_reopens_an_archived_call() -> None:
    record = call_record("C:1", [], version=7)
    assert not reopens(None, record)
    assert not reopens(Archived(7, "v1"), record)  # the same snapshot republished
    assert reopens(Archived(6, "v1"), record)
