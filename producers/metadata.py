"""CUCM recording metadata from the From header, and the call key built from it.

CUCM puts the recorded call's identity in the From URI parameters of each of its two dialogs
(see shared/cucm-recording.md). Both dialogs carry the same ``x-refci`` and cluster id, so the
key ``<cluster id>:<x-refci>`` pairs them even when they reach different recorders.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callrec.avro.events import Leg
from callrec.producers.errors import MissingCallMetadata


@dataclass(frozen=True)
class NameAddr:
    """A From / To header split into its parts; parameter names are lower-cased."""

    display_name: str | None
    uri: str
    user: str
    host: str
    uri_params: dict[str, str] = field(default_factory=dict)
    header_params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CallMetadata:
    """What CUCM tells the recorder about the recorded call, per dialog."""

    leg: Leg
    cluster_id: str
    refci: str
    far_end_refci: str | None
    near_end_addr: str | None
    near_end_device: str | None
    near_end_cluster_id: str | None
    near_end_guid: str | None
    far_end_addr: str | None
    far_end_device: str | None
    far_end_cluster_id: str | None
    far_end_guid: str | None
    from_display: str | None
    from_params: dict[str, str]

    @property
    def call_key(self) -> str:
        return call_key(self.cluster_id, self.refci)


def call_key(cluster_id: str, refci: str) -> str:
    """The Kafka key of every event of the call; outside consumers rely on this format."""
    return f"{cluster_id}:{refci}"


def _split_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, _, value = part.partition("=")
        params[name.strip().lower()] = value.strip()
    return params


def parse_name_addr(value: str) -> NameAddr:
    """Split a From / To header value; refuses what is not a SIP name-addr or addr-spec."""
    text = value.strip()
    display: str | None = None
    if "<" in text:
        head, _, rest = text.partition("<")
        uri, closed, tail = rest.partition(">")
        if not closed:
            raise MissingCallMetadata(f"unterminated <...> in {value!r}")
        head = head.strip()
        if head.startswith('"') and head.endswith('"') and len(head) >= 2:
            head = head[1:-1]
        display = head or None
        header_params = _split_params(tail)
    else:
        # RFC 3261 20.10: without <>, every ;parameter belongs to the header, not the URI.
        uri, _, tail = text.partition(";")
        header_params = _split_params(tail)
    uri = uri.strip()
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips", "tel"):
        raise MissingCallMetadata(f"not a SIP URI: {uri!r}")
    addr, _, uri_param_text = rest.partition(";")
    user, at, host = addr.rpartition("@")
    if not at:
        user, host = "", addr
    return NameAddr(display, uri, user, host, _split_params(uri_param_text), header_params)


def _opt(params: dict[str, str], name: str) -> str | None:
    return params.get(name) or None


def call_metadata(from_header: str, default_cluster_id: str) -> CallMetadata:
    """Read a CUCM recording dialog's From header; MissingCallMetadata if it is not one.

    The cluster id is ``x-nearendclusterid``; CUCM versions or trunks that leave it out still send
    ``x-farendclusterid`` (same cluster for a local call), and failing both the configured default
    keeps the key stable for a single-cluster site.
    """
    addr = parse_name_addr(from_header)
    params = addr.uri_params
    if "x-nearend" in params:
        leg = Leg.NEAR_END
    elif "x-farend" in params:
        leg = Leg.FAR_END
    else:
        raise MissingCallMetadata("From has neither x-nearend nor x-farend")
    refci = _opt(params, "x-refci")
    if refci is None:
        raise MissingCallMetadata("From has no x-refci")
    cluster_id = (
        _opt(params, "x-nearendclusterid")
        or _opt(params, "x-farendclusterid")
        or default_cluster_id
    )
    return CallMetadata(
        leg=leg,
        cluster_id=cluster_id,
        refci=refci,
        far_end_refci=_opt(params, "x-farendrefci"),
        near_end_addr=_opt(params, "x-nearendaddr"),
        near_end_device=_opt(params, "x-nearenddevice"),
        near_end_cluster_id=_opt(params, "x-nearendclusterid"),
        near_end_guid=_opt(params, "x-nearendguid"),
        far_end_addr=_opt(params, "x-farendaddr"),
        far_end_device=_opt(params, "x-farenddevice"),
        far_end_cluster_id=_opt(params, "x-farendclusterid"),
        far_end_guid=_opt(params, "x-farendguid"),
        from_display=addr.display_name,
        from_params=dict(params),
    )
