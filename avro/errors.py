"""Errors of the event contract: none is retriable, the same bytes fail the same way."""

from callrec.errors import CallrecError


class ContractError(CallrecError):
    pass


class UndecodableEvent(ContractError):
    """Bytes that are not a single-object-encoded event of a known schema."""


class InvalidEvent(ContractError):
    """An event that decodes but does not satisfy its model (or cannot be encoded)."""
