"""Errors of the CUCM emulator."""

from callrec.errors import CallrecError


class EmulatorError(CallrecError):
    """Root of the emulator's errors."""


class BadDestination(EmulatorError):
    """A destination that is not NAME=HOST:PORT, or a duplicate name."""


class NotInService(EmulatorError):
    """A destination did not reach the awaited state in time."""


class DemoFailed(EmulatorError):
    """A demo call was not recorded and archived in time."""


class NoFreePorts(EmulatorError):
    """No free block of local ports was found for a sipp process."""
