"""CUCM's OPTIONS-ping rules: given a destination's state and a ping's outcome, then..."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callrec.emulator.availability import (
    ConnectFailed,
    DestinationState,
    NoResponse,
    Outcome,
    PingTiming,
    Response,
    State,
    on_ping,
)

TIMING = PingTiming(
    in_service_interval_s=60, out_of_service_interval_s=120, retries=6, retry_interval_s=0.5
)
IN, OUT, UNKNOWN = State.IN_SERVICE, State.OUT_OF_SERVICE, State.UNKNOWN


@pytest.mark.parametrize(
    ("given_state", "outcome", "state", "next_in", "changed"),
    [
        (UNKNOWN, Response(200), IN, 60, True),
        (UNKNOWN, Response(503), OUT, 120, True),
        (IN, Response(200), IN, 60, False),
        (IN, Response(404), IN, 60, False),  # any other response: the peer is alive
        (IN, Response(403), IN, 60, False),
        (IN, Response(408), OUT, 120, True),
        (IN, Response(503), OUT, 120, True),
        (IN, ConnectFailed(), OUT, 120, True),
        (OUT, Response(503), OUT, 120, False),
        (OUT, Response(200), IN, 60, True),
        (OUT, ConnectFailed(), OUT, 120, False),
    ],
)
def test_final_outcomes(
    given_state: State, outcome: Outcome, state: State, next_in: float, changed: bool
) -> None:
    decision = on_ping(DestinationState(given_state, 1.0), outcome, 1000.0, TIMING)
    assert decision.destination.state is state
    assert decision.next_ping_at == 1000.0 + next_in
    assert decision.changed is changed and not decision.retransmit
    assert decision.destination.changed_at == (1000.0 if changed else 1.0)


def test_no_response_is_out_of_service_only_after_every_retry() -> None:
    current, now = DestinationState(IN, 0.0), 100.0
    for retry in range(1, TIMING.retries + 1):
        decision = on_ping(current, NoResponse(), now, TIMING)
        assert decision.retransmit and not decision.changed
        assert decision.next_ping_at == now  # the wait for the answer was the retry interval
        assert decision.destination.state is IN and decision.destination.unanswered == retry
        current, now = decision.destination, now + TIMING.retry_interval_s
    decision = on_ping(current, NoResponse(), now, TIMING)
    assert decision.destination == DestinationState(OUT, now, 0)
    assert decision.changed and not decision.retransmit
    assert decision.next_ping_at == now + TIMING.out_of_service_interval_s


def test_an_answer_during_the_retries_keeps_it_in_service() -> None:
    retrying = on_ping(DestinationState(IN, 0.0), NoResponse(), 5.0, TIMING).destination
    decision = on_ping(retrying, Response(200), 5.5, TIMING)
    assert decision.destination == DestinationState(IN, 0.0, 0) and not decision.changed


outcomes = st.one_of(
    st.builds(Response, st.integers(100, 699)), st.just(NoResponse()), st.just(ConnectFailed())
)


@given(st.lists(outcomes, max_size=40))
def test_the_state_is_set_by_the_last_final_outcome(history: list[Outcome]) -> None:
    timing = PingTiming(1, 2, 2, 0.25)
    current, now, changes = DestinationState(), 0.0, 0
    for outcome in history:
        decision = on_ping(current, outcome, now, timing)
        assert decision.next_ping_at >= now
        changes += decision.changed
        if not decision.retransmit:
            expected = (
                IN if isinstance(outcome, Response) and outcome.status not in (408, 503) else OUT
            )
            assert decision.destination.state is expected
        current, now = decision.destination, decision.next_ping_at
    assert current.unanswered <= timing.retries
    assert changes <= len(history)
