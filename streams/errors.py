"""Errors of the call-state worker."""

from callrec.errors import CallrecError, RetriableError


class StreamsError(CallrecError):
    pass


class InvariantViolated(StreamsError):
    """An event that decodes but cannot be part of its call (wrong key, leg side flips, ...).

    It goes to the dead-letter topic with this reason; the same event always fails the same way.
    """


class LateEvent(StreamsError):
    """An event for a call evicted from the table long ago; folding it would resurrect the call."""


class StreamsUnavailable(RetriableError):
    """Kafka could not be reached for the worker's own reads (recorder feed, replay)."""
