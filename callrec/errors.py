"""Root of every error the project raises on purpose.

``retriable`` says what a caller should do: retry later (a broker or store that is down, a full
disk that may be cleared) or give up on this input (bad bytes, a broken invariant).
"""


class CallrecError(Exception):
    retriable = False


class RetriableError(CallrecError):
    retriable = True
