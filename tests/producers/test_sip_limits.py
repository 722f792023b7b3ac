"""Per-peer limits of the SIP edge (sip_limits.py), with the clock given."""

from __future__ import annotations

from callrec.producers.sip_limits import PRUNE_ABOVE, ConnectionCaps, InviteRate, LogBudget


def test_invite_rate_allows_a_burst_then_the_rate_per_peer() -> None:
    limit = InviteRate(rate=2.0, burst=3)
    assert [limit.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limit.allow("b", 0.0)  # another peer has its own bucket
    assert not limit.allow("a", 0.4)  # 0.8 of a token
    assert limit.allow("a", 0.5)
    assert [limit.allow("a", 100.0) for _ in range(4)] == [True, True, True, False]  # no hoard


def test_invite_rate_forgets_only_peers_whose_bucket_refilled() -> None:
    limit = InviteRate(rate=1.0, burst=1)
    for n in range(PRUNE_ABOVE):
        limit.allow(f"p{n}", 0.0)
    assert not limit.allow("p0", 0.5)
    limit.allow("new", 0.5)  # over the bound: nothing refilled yet, nobody forgotten
    assert not limit.allow("p1", 0.5)
    limit.allow("newer", 5.0)  # now everyone refilled: forgotten, and still served
    assert limit.allow("p2", 5.0)


def test_connection_caps_total_and_per_peer() -> None:
    caps = ConnectionCaps(total=3, per_peer=2)
    assert caps.admit("a") is None and caps.admit("a") is None
    assert caps.admit("a") == "2 connections open from a"
    assert caps.admit("b") is None
    assert caps.admit("c") == "3 connections open"
    caps.release("a")
    assert caps.admit("c") is None and caps.open == 3


def test_log_budget_counts_what_it_holds_back_and_says_so() -> None:
    budget = LogBudget(per_minute=2)
    assert [budget.take(0.0), budget.take(1.0)] == [0, 0]
    assert [budget.take(2.0), budget.take(3.0)] == [None, None]
    assert budget.take(61.0) == 2  # the next window's first line says how many were held back
    assert LogBudget(per_minute=0).take(0.0) is None
