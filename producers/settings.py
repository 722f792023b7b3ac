"""The recorder's settings: every value from ``CALLREC_*`` / ``CALLREC_RECORDER_*`` variables."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from callrec.avro.topics import MAX_RECORD_BYTES
from callrec.producers.chunker import CHUNK_MAX_BYTES
from callrec.settings import CommonSettings


class RecorderSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="CALLREC_RECORDER_", extra="ignore", frozen=True)

    kafka_bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers (CALLREC_RECORDER_KAFKA_BOOTSTRAP, else CALLREC_KAFKA_BOOTSTRAP)."""
    id: str = "rec-1"
    """Recorder id: the heartbeat key and the prefix of every leg id; unique per recorder."""
    sip_host: str = "127.0.0.1"
    """Address SIP (UDP) listens on, and the address put in Contact and SDP c= lines."""
    sip_port: int = 5060
    rtp_host: str = ""
    """Address the RTP sockets bind to; empty means the SIP host."""
    rtp_ports: str = "20000-20999"
    """Inclusive UDP port range, one port per leg."""
    allow: str = "127.0.0.1"
    """Comma-separated peers (addresses or CIDR networks) served; everyone else gets 503."""
    max_legs: int = 1000
    """Capacity: INVITEs beyond this many live legs get 503."""
    data_dir: Path = Path("var/recorder")
    """Holds the spool (and the status file)."""
    spool_max_bytes: int = 1024**3
    spool_unhealthy_bytes: int = 256 * 1024**2
    """OPTIONS and new INVITEs get 503 while the spool holds more than this."""
    default_cluster_id: str = "cucm"
    """Cluster id for From headers that carry neither x-nearendclusterid nor x-farendclusterid."""
    min_se_s: int = 90
    """Smallest RFC 4028 session interval accepted; a smaller Session-Expires gets 422."""
    chunk_max_bytes: int = Field(default=CHUNK_MAX_BYTES, ge=128 * 1024,
                                 le=MAX_RECORD_BYTES - 256 * 1024)
    """A chunk is closed early rather than grow past this encoded size: below Kafka's limit,
    above the largest UDP datagram (a chunk holds at least one packet)."""
    heartbeat_interval_ms: int = 1000
    drain_timeout_s: float = 30.0
    """On SIGTERM: how long live calls may go on before they are ended as RECORDER_SHUTDOWN."""
    flush_timeout_s: float = 10.0
    """On shutdown: how long Kafka gets to take the spool (the rest waits for the next run)."""
    media_timeout_s: float = 60.0
    """A started leg, not on hold, that gets no RTP this long is ended (BYE, MEDIA_TIMEOUT);
    0 turns it off."""
    max_leg_duration_s: float = 43_200.0
    """A leg older than this is ended (BYE, OTHER, said in sip_reason); 0 turns it off."""
    disk_full_memory_bytes: int = 64 * 1024**2
    """While the spool's disk refuses writes (full, failing), events of live legs wait in memory
    up to this many bytes (and go to Kafka from there); beyond it they are lost and counted."""
    answer_delay_ms: int = 0
    """Ring before answering (lets CUCM or a test CANCEL first); 0 answers at once."""

    # -- SIP and media edge (hostile input): see README "Limits at the SIP and media edge" --------
    rtp_max_datagram_bytes: int = Field(default=1500, ge=12, le=2047)
    """Largest RTP datagram recorded; larger ones are dropped and counted (G.711/20 ms: 172)."""
    sip_invite_rate_per_peer: float = Field(default=100.0, gt=0)
    """New-dialog INVITEs per second one peer address may send; beyond it 503 + Retry-After."""
    sip_invite_burst_per_peer: int = Field(default=200, ge=1)
    """How many INVITEs a peer may send at once before the rate applies."""
    sip_tcp_max_connections: int = Field(default=256, ge=1)
    """SIP/TCP connections open at once; more are closed at accept."""
    sip_tcp_max_connections_per_peer: int = Field(default=16, ge=1)
    """SIP/TCP connections one peer address may hold open; more are closed at accept."""
    sip_tcp_idle_timeout_s: float = Field(default=600.0, gt=0)
    """A SIP/TCP connection with no bytes for this long is closed (CUCM pings every 60-120 s)."""
    sip_tcp_message_timeout_s: float = Field(default=10.0, gt=0)
    """A SIP/TCP message begun must be complete within this long, or the connection is closed."""
    sip_parse_failures_logged_per_minute: int = Field(default=10, ge=0)
    """Unparsable SIP messages logged per minute; the rest are counted and summed up in one line."""

    @model_validator(mode="before")
    @classmethod
    def _shared_bootstrap(cls, data: object) -> object:
        """Fall back to the project-wide CALLREC_KAFKA_BOOTSTRAP every process reads."""
        if isinstance(data, dict) and "kafka_bootstrap" not in data:
            shared = CommonSettings().kafka_bootstrap
            return {**data, "kafka_bootstrap": shared}
        return data

    @field_validator("rtp_ports")
    @classmethod
    def _port_range(cls, value: str) -> str:
        low, _, high = value.partition("-")
        if not (low.isdigit() and high.isdigit() and 1024 <= int(low) <= int(high) <= 65535):
            raise ValueError(f"rtp_ports must be LOW-HIGH within 1024-65535, not {value!r}")
        return value

    @field_validator("allow")
    @classmethod
    def _allow_list(cls, value: str) -> str:
        for item in filter(None, (v.strip() for v in value.split(","))):
            ipaddress.ip_network(item, strict=False)
        return value

    @property
    def rtp_port_range(self) -> range:
        low, _, high = self.rtp_ports.partition("-")
        return range(int(low), int(high) + 1)

    @property
    def allowed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        items = filter(None, (v.strip() for v in self.allow.split(",")))
        return tuple(ipaddress.ip_network(item, strict=False) for item in items)

    @property
    def rtp_bind_host(self) -> str:
        return self.rtp_host or self.sip_host
