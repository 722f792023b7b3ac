"""Errors of the recorder: what a peer sent wrong, and what the recorder cannot do right now."""

from callrec.errors import CallrecError, RetriableError


class RecorderError(CallrecError):
    """Root of the recorder's errors."""


class BadSipInput(RecorderError):
    """A SIP request the recorder refuses as malformed (answered 400, counted)."""


class MissingCallMetadata(BadSipInput):
    """An INVITE without the CUCM From parameters a call key is built from."""


class BadSdp(BadSipInput):
    """An SDP body that cannot be read."""


class NoCommonCodec(RecorderError):
    """The peer offered or answered no codec the recorder takes (488 / BYE cause 47)."""


class BadRtp(RecorderError):
    """A datagram on an RTP port that is not an RTP packet (dropped, counted)."""


class NoFreeRtpPort(RetriableError):
    """Every port of the configured RTP range is in use (answered 503)."""


class SpoolFull(RetriableError):
    """The on-disk spool reached its bound while Kafka is away."""
