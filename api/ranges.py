"""HTTP Range for one object (RFC 9110 section 14): what to send, decided without I/O.

One range per request: a multi-range request is answered with the whole object (the RFC lets
a server ignore Range), since browsers seeking audio only ever ask for one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SINGLE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.I)


@dataclass(frozen=True)
class Slice:
    """Bytes ``start..end`` inclusive of an object of ``size`` bytes."""

    start: int
    end: int
    size: int
    partial: bool

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


class Unsatisfiable(Exception):
    """416: no byte of the range lies within the object."""


def choose(range_header: str | None, if_range: str | None, etag: str, size: int) -> Slice:
    """The slice to send. Raises Unsatisfiable for a range wholly outside the object."""
    whole = Slice(0, size - 1, size, partial=False)
    if not range_header:
        return whole
    if if_range is not None and if_range.strip() != etag:
        return whole  # the client's copy is stale: it gets the current object in full
    match = SINGLE.match(range_header)
    if match is None:
        return whole  # several ranges or a unit we do not know: ignored, as RFC 9110 allows
    first, last = match.groups()
    if first == "" and last == "":
        return whole
    if first == "":  # suffix: the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            raise Unsatisfiable
        return Slice(max(0, size - count), size - 1, size, partial=True)
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return whole  # syntactically invalid: ignored
    if start >= size:
        raise Unsatisfiable
    return Slice(start, end, size, partial=True)
