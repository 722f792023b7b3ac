"""Errors of the REST server; ``retriable`` says whether asking again later may help."""

from callrec.errors import CallrecError, RetriableError


class ApiError(CallrecError):
    """Root of the REST server's own errors."""


class AuditUnavailable(RetriableError):
    """Kafka did not acknowledge the access event: the audio is not sent (no audit, no audio)."""


class RecordingUnavailable(RetriableError):
    """The object store could not be read."""


class TokenStoreError(ApiError):
    """The token file is unreadable or a token operation makes no sense."""


class MissingObject(RecordingUnavailable):
    """The object (or that version of it) is not in the store."""

    retriable = False
