"""Errors of the metrics exporter."""

from callrec.errors import CallrecError, RetriableError


class ExporterError(CallrecError):
    pass


class InvalidSample(ExporterError):
    """A metric sample that decodes but no series can take (label set, NaN, negative count).

    It goes to the dead-letter topic with this reason and is counted; the exporter goes on.
    """


class ExporterUnavailable(RetriableError):
    """Kafka could not be reached for a read or an admin poll; the next attempt may work."""
