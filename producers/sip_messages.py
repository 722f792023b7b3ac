"""Reading and writing sippy messages for the recorder's UAS (no policy here)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sippy.SipFrom import SipFrom
from sippy.SipHeader import SipHeader
from sippy.SipRequest import SipRequest
from sippy.SipTo import SipTo
from sippy.SipURL import SipURL

from callrec.producers.errors import NoCommonCodec
from callrec.producers.sdp import RemoteMedia, parse_sdp

log = logging.getLogger("callrec.producers.sip_uas")
Response = tuple[Any, Any, Any] | None
"""What a sippy request handler returns: (response, cancel callback, ACK callback), or None."""
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO"


def header(msg: Any, name: str) -> str | None:
    """A header's value as text, or None when absent or unparseable by sippy."""
    try:
        if msg.countHFs(name) == 0:
            return None
        return str(msg.getHFBody(name))
    except Exception:
        return None


class SipLog:
    """sippy's logger interface, routed to ours at debug level."""

    def write(self, *args: Any, **kwargs: Any) -> None:
        log.debug("%s", "".join(str(a) for a in args))


def add_session_timer(resp: Any, session_expires: int | None) -> None:
    if session_expires is not None:
        # RFC 4028 9: CUCM (the UAC) stays the refresher; Require tells it we do timers.
        resp.appendHeader(
            SipHeader(name="session-expires", bodys=f"{session_expires};refresher=uac")
        )
        resp.appendHeader(SipHeader(name="require", bodys="timer"))


def add_capabilities(resp: Any) -> None:
    resp.appendHeader(SipHeader(name="allow", bodys=ALLOW))
    resp.appendHeader(SipHeader(name="supported", bodys="timer"))


def bye_sender(tm: Any, req: Any, t: Any, resp: Any) -> Callable[[], None]:
    """A BYE for this dialog, built from its INVITE (we are the UAS: From and To swap)."""
    remote = req.getHFBody("from").getCopy()
    local = resp.getHFBody("to").getCopy()
    call_id = req.getHFBody("call-id").getCopy()
    target = req.getSource(ver=2)
    contact = req.getHFBody("contact").getUrl().getCopy() if req.countHFs("contact") else None
    userv = t.userv

    def send() -> None:
        ruri = contact or SipURL(host=target[0][0], port=target[0][1])
        bye = SipRequest(
            method="BYE",
            ruri=ruri,
            to=SipTo(address=remote.address.getCopy()),
            fr0m=SipFrom(address=local.address.getCopy()),
            callid=call_id,
            cseq=1,
            target=target,
        )
        tm.newTransaction(bye, userv=userv)

    return send


def offer_or_refusal(req: Any) -> tuple[RemoteMedia | None, Response]:
    """The request's SDP offer, or the 488 to send when none of its codecs is ours."""
    offer = body_media(req)
    if offer is not None:
        try:
            offer.codec()
        except NoCommonCodec:
            return None, (req.genResponse(488, "Not Acceptable Here"), None, None)
    return offer, None


def body_media(req: Any) -> RemoteMedia | None:
    body = req.getBody()
    if body is None:
        return None
    text = str(body)
    return parse_sdp(text) if text.strip() else None


def peer(req: Any) -> str:
    """host:port of the message's sender, for logs and rate limits."""
    try:
        host, port = req.getSource()
        return f"{host}:{port}"
    except Exception:
        return "unknown"


def safe_response(req: Any, code: int, reason: str) -> Response:
    """A response that cannot raise into sippy (a request too broken to answer gets none)."""
    try:
        return (req.genResponse(code, reason), None, None)
    except Exception:
        return None
