"""The recorder's SIP side: thin glue over sippy's transaction layer, run in sippy's own thread.

sippy (a maintained RFC 3261 stack) parses messages, matches transactions, retransmits the 2xx
until the ACK, answers CANCEL with 487 and duplicate requests from its cache. This module adds
what a recording trunk endpoint decides: who may talk to us (503 to everyone else, see
``_refuse_stranger``), whether we can take a call (503), how fast a peer may open dialogs
(``sip_limits``), the CUCM metadata (400 without it), the SDP offer/answer and RFC 4028 session
intervals, and it reports each dialog's facts to the asyncio recorder. No handler may raise into
sippy: anything unexpected becomes a 400/500 answer and a counter.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sippy.MsgBody import MsgBody
from sippy.SipHeader import SipHeader
from sippy.Time.Timeout import Timeout

from callrec.avro.events import LegEndReason
from callrec.producers.errors import BadSdp, BadSipInput, NoFreeRtpPort
from callrec.producers.media import PortPool
from callrec.producers.metadata import call_metadata, parse_name_addr
from callrec.producers.sdp import RemoteMedia, build_answer, build_offer
from callrec.producers.settings import RecorderSettings
from callrec.producers.sip_facts import (
    DialogAccepted,
    DialogClosed,
    DialogOpened,
    MediaNegotiated,
    SipFact,
    dialog_leg_id,
    end_reason,
    q850_cause,
    session_interval,
)
from callrec.producers.sip_limits import ConnectionCaps, InviteRate, LogBudget
from callrec.producers.sip_messages import (
    ALLOW,
    Response,
    SipLog,
    add_capabilities,
    add_session_timer,
    body_media,
    bye_sender,
    header,
    offer_or_refusal,
    peer,
    safe_response,
)
from callrec.producers.sip_stack import ParseFailures, TransactionManager
from callrec.producers.sip_tcp import TcpSipServer
from callrec.producers.vitals import Health

log = logging.getLogger(__name__)


@dataclass
class Dialog:
    """SIP-thread-only state of one accepted dialog."""

    leg_id: str
    call_id: str
    remote_tag: str
    local_tag: str
    port: int
    session_id: int
    session_expires_s: int | None
    sdp_version: int = 1
    answered: bool = False
    closed: bool = False
    answer_timer: Any = None
    from_params: dict[str, str] = field(default_factory=dict)
    send_bye: Callable[[], None] | None = None


def _now_us() -> int:
    return time.time_ns() // 1000


class SipUas:
    def __init__(
        self,
        settings: RecorderSettings,
        ports: PortPool,
        health: Callable[[], Health],
        submit: Callable[[SipFact], None],
    ) -> None:
        self.settings = settings
        self.ports = ports
        self.health = health
        self.submit = submit
        self.allowed = settings.allowed_networks
        self.dialogs: dict[tuple[str, str, str], Dialog] = {}  # Call-ID, remote tag, local tag
        self.stats: Counter[str] = Counter()
        self.invite_rate = InviteRate(
            settings.sip_invite_rate_per_peer, settings.sip_invite_burst_per_peer
        )
        self.parse_failures = ParseFailures(
            self.stats, LogBudget(settings.sip_parse_failures_logged_per_minute)
        )
        self.tm: Any = None
        self.tcp: TcpSipServer | None = None

    def start(self) -> None:
        """Bind SIP on UDP and TCP; must run in the thread that runs sippy's event loop."""
        config = {
            "_sip_address": self.settings.sip_host,
            "_sip_port": self.settings.sip_port,
            "_sip_logger": SipLog(),
        }
        self.tm = TransactionManager(config, self.on_request)
        self.parse_failures.install(self.tm)
        config["_sip_tm"] = self.tm
        s = self.settings
        self.tcp = TcpSipServer(
            s.sip_host,
            s.sip_port,
            self.tm.handleIncoming,
            allowed=self._allowed,
            caps=ConnectionCaps(s.sip_tcp_max_connections, s.sip_tcp_max_connections_per_peer),
            idle_timeout_s=s.sip_tcp_idle_timeout_s,
            message_timeout_s=s.sip_tcp_message_timeout_s,
            stats=self.stats,
        )
        self.tcp.start()

    def hang_up(self, leg_id: str) -> None:
        """The recorder ended this leg on its own (expiry, shutdown): tell the peer with a BYE."""
        for key, dialog in list(self.dialogs.items()):
            if dialog.leg_id == leg_id:
                dialog.closed = True
                del self.dialogs[key]
                if dialog.answered and dialog.send_bye is not None:
                    try:
                        dialog.send_bye()
                    except Exception:
                        log.exception("could not send BYE for %s", leg_id)

    # -- dispatch --------------------------------------------------------------------------------

    def on_request(self, req: Any, t: Any) -> Response:
        """sippy's request callback: every request that is not a retransmission or an ACK."""
        try:
            self.stats[req.getMethod()] += 1
            host = req.getSource()[0]
            if not self._allowed(host):
                return self._refuse_stranger(req)
            if req.getMethod() == "INVITE" and not req.getHFBody("to").getTag():
                if not self.invite_rate.allow(host, time.monotonic()):
                    self.stats["rate_limited"] += 1
                    return self._unavailable(req)
            return self._dispatch(req, t)
        except (BadSipInput, BadSdp) as e:
            self.stats["bad_requests"] += 1
            log.info("400 to %s: %s", peer(req), e)
            return safe_response(req, 400, f"Bad Request ({e})"[:120])
        except Exception:
            self.stats["bad_requests"] += 1
            log.exception("refusing a request sippy parsed but we could not handle")
            return safe_response(req, 400, "Bad Request")

    def _dispatch(self, req: Any, t: Any) -> Response:
        method = req.getMethod()
        to_tag = req.getHFBody("to").getTag()
        if method == "OPTIONS":
            return self._options(req)
        if not to_tag:
            if method == "INVITE":
                return self._invite(req, t)
            if method in ("BYE", "UPDATE", "INFO", "NOTIFY"):
                return (req.genResponse(481, "Call/Transaction Does Not Exist"), None, None)
            return self._not_allowed(req)
        call_id, from_tag = str(req.getHFBody("call-id")), req.getHFBody("from").getTag() or ""
        dialog = self.dialogs.get((call_id, from_tag, to_tag))
        if dialog is None:
            return (req.genResponse(481, "Call/Transaction Does Not Exist"), None, None)
        if method == "BYE":
            return self._bye(req, dialog)
        if method in ("INVITE", "UPDATE"):
            return self._refresh(req, t, dialog)
        if method in ("INFO", "NOTIFY"):
            return (req.genResponse(200, "OK"), None, None)
        return self._not_allowed(req)

    def _allowed(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self.allowed)

    def _refuse_stranger(self, req: Any) -> Response:
        """A peer off the allow-list gets 503, never 403, whatever it sends.

        CUCM's OPTIONS ping counts every answer but 408/503 (and a failed TCP connect) as in
        service, 403 included: a node we refuse with 403 keeps routing recordings to us, and each
        INVITE fails. 503 takes us out of its route list; and an INVITE that does reach us gets
        503 too, on which CUCM tries the route list's next recorder (a 403 may end the hunt, so
        the call would go unrecorded). The counter still says who was refused.
        """
        self.stats["forbidden"] += 1
        return self._unavailable(req)

    def _unavailable(self, req: Any) -> Response:
        resp = req.genResponse(503, "Service Unavailable")
        resp.appendHeader(SipHeader(name="retry-after", bodys="5"))
        return (resp, None, None)

    # -- requests ----------------------------------------------------------------------------------

    def _options(self, req: Any) -> Response:
        health = self.health()
        if health.accepting:
            resp = req.genResponse(200, "OK")
        else:
            resp = req.genResponse(503, "Service Unavailable")
            resp.appendHeader(SipHeader(name="retry-after", bodys="5"))
            resp.appendHeader(
                SipHeader(name="warning", bodys=f'399 callrec "{"; ".join(health.reasons)}"')
            )
        add_capabilities(resp)
        return (resp, None, None)

    def _invite(self, req: Any, t: Any) -> Response:
        health = self.health()
        if not health.accepting or len(self.dialogs) >= self.settings.max_legs:
            self.stats["busy"] += 1
            return self._unavailable(req)
        meta = call_metadata(str(req.getHFBody("from")), self.settings.default_cluster_id)
        offer, refusal = offer_or_refusal(req)
        if refusal is not None:
            return refusal
        session_expires = session_interval(header(req, "session-expires"))
        if session_expires is not None and session_expires < self.settings.min_se_s:
            resp = req.genResponse(422, "Session Interval Too Small")
            resp.appendHeader(SipHeader(name="min-se", bodys=str(self.settings.min_se_s)))
            return (resp, None, None)
        try:
            port, sock = self.ports.acquire()
        except NoFreeRtpPort:
            self.stats["busy"] += 1
            return (req.genResponse(503, "Service Unavailable"), None, None)
        call_id = str(req.getHFBody("call-id"))
        remote_tag = req.getHFBody("from").getTag() or ""
        resp = req.genResponse(200, "OK")
        resp.getHFBody("to").genTag()
        local_tag = resp.getHFBody("to").getTag()
        dialog = Dialog(
            leg_id=dialog_leg_id(self.settings.id, call_id, remote_tag, local_tag),
            call_id=call_id,
            remote_tag=remote_tag,
            local_tag=local_tag,
            port=port,
            session_id=random.randrange(1, 2**31),
            session_expires_s=session_expires,
            from_params=meta.from_params,
        )
        self.dialogs[(call_id, remote_tag, local_tag)] = dialog
        dialog.send_bye = bye_sender(self.tm, req, t, resp)
        self._answer_sdp(resp, dialog, offer, req)
        add_session_timer(resp, session_expires)
        opened = DialogOpened(
            leg_id=dialog.leg_id,
            meta=meta,
            sip_call_id=call_id,
            from_tag=remote_tag,
            to_tag=local_tag,
            cisco_guid=header(req, "cisco-guid"),
            destination=req.getRURI().username or "",
            signaling_peer=peer(req),
            local_port=port,
            session_expires_s=session_expires,
            media=offer,
            at_us=_now_us(),
        )
        self.submit(DialogAccepted(opened, sock))
        t.cancel_cb = partial(self._cancelled, dialog)
        t.noack_cb = partial(self._never_acked, dialog)
        # With an offer in the INVITE the ACK carries nothing new; a delayed offer's ACK answers.
        ack_cb = partial(self._acked, dialog, method="INVITE") if offer is None else None
        delay = self.settings.answer_delay_ms / 1000
        if delay <= 0:
            dialog.answered = True
            self.tm.sendResponse(resp, t, ack_cb=ack_cb)
            return None
        self.tm.sendResponse(req.genResponse(180, "Ringing"), t)
        dialog.answer_timer = Timeout(self._answer_later, delay, 1, dialog, resp, t, ack_cb)
        return None

    def _answer_later(self, dialog: Dialog, resp: Any, t: Any, ack_cb: Any) -> None:
        if dialog.closed:
            return
        dialog.answered = True
        self.tm.sendResponse(resp, t, ack_cb=ack_cb)

    def _refresh(self, req: Any, t: Any, dialog: Dialog) -> Response:
        """re-INVITE / UPDATE: session refresh, hold/resume, codec or far-end change."""
        method = req.getMethod()
        offer, refusal = offer_or_refusal(req)
        if refusal is not None:
            return refusal
        session_expires = session_interval(header(req, "session-expires"))
        resp = req.genResponse(200, "OK")
        delayed_offer = method == "INVITE" and offer is None
        if offer is not None or delayed_offer:
            self._answer_sdp(resp, dialog, offer, req)
        add_session_timer(resp, session_expires or dialog.session_expires_s)
        from_params = parse_name_addr(str(req.getHFBody("from"))).uri_params
        if delayed_offer:
            # The answer comes in the ACK; the change is reported then.
            ack_cb = partial(
                self._acked,
                dialog,
                method=method,
                session_expires=session_expires,
                from_params=from_params,
            )
            self.tm.sendResponse(resp, t, ack_cb=ack_cb)
            return None
        self.submit(
            MediaNegotiated(dialog.leg_id, method, offer, session_expires, from_params, _now_us())
        )
        return (resp, None, None)

    def _bye(self, req: Any, dialog: Dialog) -> Response:
        reason = header(req, "reason")
        cause = q850_cause(reason)
        self._close(dialog, end_reason("BYE", cause), reason, cause)
        return (req.genResponse(200, "OK"), None, None)

    def _not_allowed(self, req: Any) -> Response:
        resp = req.genResponse(405, "Method Not Allowed")
        resp.appendHeader(SipHeader(name="allow", bodys=ALLOW))
        return (resp, None, None)

    # -- transaction callbacks ----------------------------------------------------------------

    def _acked(
        self,
        dialog: Dialog,
        ack: Any,
        *,
        method: str,
        session_expires: int | None = None,
        from_params: dict[str, str] | None = None,
    ) -> None:
        """The ACK of a 2xx that carried our offer: its body is the peer's answer."""
        if dialog.closed:
            return
        media: RemoteMedia | None = None
        try:
            media = body_media(ack)
        except BadSdp as e:
            self.stats["bad_requests"] += 1
            log.info("leg %s: unreadable SDP in ACK: %s", dialog.leg_id, e)
        self.submit(
            MediaNegotiated(
                dialog.leg_id, method, media, session_expires, from_params or {}, _now_us()
            )
        )

    def _cancelled(self, dialog: Dialog, *_: Any) -> None:
        """sippy has already answered the INVITE with 487."""
        if dialog.answer_timer is not None:
            dialog.answer_timer.cancel()
        self._close(dialog, LegEndReason.CANCEL, None, None)

    def _never_acked(self, dialog: Dialog, *_: Any) -> None:
        log.warning("leg %s: 200 OK never acknowledged", dialog.leg_id)
        self._close(dialog, LegEndReason.ERROR, None, None)

    def _close(
        self, dialog: Dialog, reason: LegEndReason, sip_reason: str | None, cause: int | None
    ) -> None:
        if dialog.closed:
            return
        dialog.closed = True
        self.dialogs.pop((dialog.call_id, dialog.remote_tag, dialog.local_tag), None)
        self.submit(DialogClosed(dialog.leg_id, reason, sip_reason, cause, _now_us()))

    # -- message parts ------------------------------------------------------------------------

    def _answer_sdp(self, resp: Any, dialog: Dialog, offer: RemoteMedia | None, req: Any) -> None:
        host = self.settings.sip_host
        if offer is None:
            sdp = build_offer(host, dialog.port, dialog.session_id, dialog.sdp_version)
        else:
            sdp = build_answer(offer, host, dialog.port, dialog.session_id, dialog.sdp_version)
        dialog.sdp_version += 1
        resp.setBody(MsgBody(sdp))
        transport = ";transport=tcp" if req.getSource(ver=2)[1] == "tcp" else ""
        contact = f"<sip:recorder@{host}:{self.settings.sip_port}{transport}>"
        resp.appendHeader(SipHeader(name="contact", bodys=contact))
        add_capabilities(resp)
