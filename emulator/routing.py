"""Route group distribution: which in-service destination the next INVITE goes to.

CUCM routes each INVITE on its own, so with Circular (its default) the two legs of one call may
land on different recorders; a refused INVITE goes to the next in-service member, and when no
member takes it the leg is not recorded.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from enum import StrEnum


class Distribution(StrEnum):
    TOP_DOWN = "top-down"
    """Always the first in-service member."""
    CIRCULAR = "circular"
    """The member after the last one an INVITE was sent to."""


@dataclass(frozen=True)
class RouteGroup:
    members: tuple[str, ...]
    distribution: Distribution = Distribution.CIRCULAR
    last_used: str | None = None


def select(
    group: RouteGroup, in_service: Collection[str], tried: Collection[str] = ()
) -> tuple[RouteGroup, str | None]:
    """The member this INVITE (or its retry after ``tried`` refused it) goes to, if any."""
    order = group.members
    if group.distribution is Distribution.CIRCULAR and group.last_used in group.members:
        after = group.members.index(group.last_used) + 1
        order = group.members[after:] + group.members[:after]
    for member in order:
        if member in in_service and member not in tried:
            return replace(group, last_used=member), member
    return group, None
