"""What the SIP side tells the recorder about its dialogs, and the header values it reads.

The SIP stack runs in its own thread; these frozen values are all that crosses to the asyncio
side, so the two never share mutable state. The one live object that crosses is the RTP socket
of an accepted dialog, handed over beside its facts (``DialogAccepted``), never inside them, so
the leg's state (``leg.py``) stays a pure value.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from callrec.avro.events import LegEndReason
from callrec.producers.metadata import CallMetadata
from callrec.producers.sdp import RemoteMedia

Q850_CODEC_MISMATCH = 47  # "bearer capability not implemented": CUCM's BYE after a failed ACK


@dataclass(frozen=True)
class DialogOpened:
    """An INVITE was accepted; RTP for it may arrive on ``local_port`` from now on."""

    leg_id: str
    meta: CallMetadata
    sip_call_id: str
    from_tag: str
    to_tag: str
    cisco_guid: str | None
    destination: str
    signaling_peer: str
    local_port: int
    session_expires_s: int | None
    media: RemoteMedia | None  # known now when the INVITE carried the offer
    at_us: int


@dataclass(frozen=True)
class MediaNegotiated:
    """An offer/answer exchange completed: the ACK of a delayed offer, a re-INVITE, an UPDATE."""

    leg_id: str
    method: str
    media: RemoteMedia | None
    session_expires_s: int | None
    from_params: dict[str, str]
    at_us: int


@dataclass(frozen=True)
class DialogClosed:
    leg_id: str
    reason: LegEndReason
    sip_reason: str | None
    q850_cause: int | None
    at_us: int


@dataclass(frozen=True)
class DialogAccepted:
    """A dialog's facts and the socket bound for its RTP (bound before the 200 OK, so RTP that
    beats the ACK waits in the kernel); the recorder owns the socket from here on."""

    opened: DialogOpened
    sock: socket.socket


SipFact = DialogAccepted | MediaNegotiated | DialogClosed

_CAUSE = re.compile(r"cause\s*=\s*(\d+)", re.IGNORECASE)


def dialog_leg_id(recorder_id: str, call_id: str, remote_tag: str, local_tag: str) -> str:
    """A leg is one dialog: RFC 3261 12 names a dialog by Call-ID and both tags, never by the
    Call-ID alone (a peer may reuse one, by mistake or to overwrite a live leg)."""
    return f"{recorder_id}:{call_id}:{remote_tag}:{local_tag}"


def q850_cause(reason_header: str | None) -> int | None:
    """The Q.850 cause of a Reason header (RFC 3326), e.g. 'Q.850;cause=16'."""
    if not reason_header or not reason_header.strip().upper().startswith("Q.850"):
        return None
    found = _CAUSE.search(reason_header)
    return int(found.group(1)) if found else None


def end_reason(method: str, cause: int | None) -> LegEndReason:
    """CUCM says 'no codec matched' with a BYE right after the ACK carrying cause 47."""
    if method == "CANCEL":
        return LegEndReason.CANCEL
    if cause == Q850_CODEC_MISMATCH:
        return LegEndReason.CODEC_MISMATCH
    return LegEndReason.BYE


def session_interval(header: str | None) -> int | None:
    """Delta-seconds of a Session-Expires / Min-SE header (RFC 4028 4), None if absent or bad."""
    if header is None:
        return None
    value = header.split(";", 1)[0].strip()
    return int(value) if value.isdigit() else None
