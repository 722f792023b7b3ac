"""Errors of the mixer and archiver.

A chunk the codec cannot read is the input's fault (dead-letter it, leave a gap); an object store
or a disk that does not answer is the world's fault (retry, report, never drop the call).
"""

from callrec.errors import CallrecError, RetriableError


class MixerError(CallrecError):
    pass


class UndecodableAudio(MixerError):
    """A chunk's payload that its codec cannot turn into samples."""


class UnsupportedFormat(MixerError):
    """A recording format this build of FFmpeg cannot write."""


class StoreUnavailable(RetriableError):
    """The object store did not answer or refused for a reason that may pass."""


class ChunkSpoolFull(RetriableError):
    """The local spool reached its disk budget; consumption waits until calls are archived."""


class ManifestInvalid(MixerError):
    """A manifest whose signature or hashes do not match."""


class ObjectLockMissing(MixerError):
    """The bucket has no object lock (or the server refused it) while the settings require it:
    recordings would be deletable, so the mixer does not start."""


class ManifestKeyError(MixerError):
    """The manifest signing key is missing, unreadable, or would be overwritten."""
