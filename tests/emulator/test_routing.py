"""Route group distribution: Top Down and Circular, with members out of service or refusing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callrec.emulator.routing import Distribution, RouteGroup, select

ABC = ("A", "B", "C")


def route_many(group: RouteGroup, in_service: set[str], n: int) -> list[str | None]:
    chosen = []
    for _ in range(n):
        group, member = select(group, in_service)
        chosen.append(member)
    return chosen


@pytest.mark.parametrize(
    ("distribution", "in_service", "expected"),
    [
        (Distribution.TOP_DOWN, {"A", "B", "C"}, ["A", "A", "A", "A"]),
        (Distribution.TOP_DOWN, {"B", "C"}, ["B", "B", "B", "B"]),
        (Distribution.CIRCULAR, {"A", "B", "C"}, ["A", "B", "C", "A"]),
        (Distribution.CIRCULAR, {"A", "C"}, ["A", "C", "A", "C"]),
        (Distribution.CIRCULAR, {"B"}, ["B", "B", "B", "B"]),
        (Distribution.CIRCULAR, set(), [None, None, None, None]),
        (Distribution.TOP_DOWN, set(), [None, None, None, None]),
    ],
)
def test_each_invite_is_routed_on_its_own(
    distribution: Distribution, in_service: set[str], expected: list[str | None]
) -> None:
    assert route_many(RouteGroup(ABC, distribution), in_service, 4) == expected


def test_circular_puts_the_two_legs_of_a_call_on_different_recorders() -> None:
    near_far = route_many(RouteGroup(("A", "B")), {"A", "B"}, 4)
    assert near_far == ["A", "B", "A", "B"]  # near-end on A, far-end on B, call after call


@pytest.mark.parametrize(
    ("distribution", "last_used", "tried", "expected"),
    [
        (Distribution.TOP_DOWN, None, ["A"], "B"),
        (Distribution.TOP_DOWN, None, ["A", "B"], "C"),
        (Distribution.TOP_DOWN, None, ["A", "B", "C"], None),  # the leg is not recorded
        (Distribution.CIRCULAR, "A", ["B"], "C"),
        (Distribution.CIRCULAR, "C", ["A"], "B"),
        (Distribution.CIRCULAR, "B", ["C", "A"], "B"),
    ],
)
def test_a_refused_invite_goes_to_the_next_member_not_yet_tried(
    distribution: Distribution, last_used: str | None, tried: list[str], expected: str | None
) -> None:
    group, member = select(RouteGroup(ABC, distribution, last_used), set(ABC), tried)
    assert member == expected
    assert group.last_used == (expected or last_used)


@given(
    st.sampled_from(Distribution),
    st.sets(st.sampled_from(ABC)),
    st.lists(st.sampled_from(ABC), unique=True),
    st.none() | st.sampled_from(ABC),
)
def test_only_in_service_members_not_yet_tried_are_chosen(
    distribution: Distribution, in_service: set[str], tried: list[str], last: str | None
) -> None:
    _, member = select(RouteGroup(ABC, distribution, last), in_service, tried)
    candidates = in_service - set(tried)
    assert (member is None) == (not candidates)
    assert member is None or member in candidates
    if distribution is Distribution.TOP_DOWN and candidates:
        assert member == min(candidates)  # ABC is in priority order


@given(st.integers(1, 30))
def test_circular_spreads_invites_evenly(n: int) -> None:
    counts = [route_many(RouteGroup(ABC), set(ABC), n).count(m) for m in ABC]
    assert max(counts) - min(counts) <= 1
