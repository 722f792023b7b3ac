"""Errors of starting and stopping the stack's real components: each says what to do about it."""

from callrec.errors import CallrecError, RetriableError


class InfraError(CallrecError):
    pass


class ToolMissing(InfraError):
    """A program the stack needs (java, mvn, go) is not on PATH."""


class PortTaken(InfraError):
    """Another process listens on a port a component was told to use."""


class StartFailed(InfraError):
    """A component exited or did not become healthy in time; the message has its log's tail."""


class ComponentDown(RetriableError):
    """A component that should be running does not answer."""
