"""The emulator's settings: ``CALLREC_CUCM_*`` variables, overridden by command-line flags."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from callrec.emulator.availability import PingTiming
from callrec.emulator.cucm import Cucm
from callrec.emulator.model import Destination, ServiceChange
from callrec.emulator.routing import Distribution


class EmulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLREC_CUCM_", extra="ignore", frozen=True)

    recorders: str = "rec-1=127.0.0.1:5060"
    """The route group's members in priority order: ``NAME=HOST:PORT``, comma separated."""
    routing: Distribution = Distribution.CIRCULAR
    ping_interval_s: float = 60.0
    """OPTIONS ping period while a destination is in service (CUCM's default)."""
    out_of_service_ping_interval_s: float = 120.0
    ping_retries: int = 6
    ping_retry_interval_s: float = 0.5
    local_ip: str = "127.0.0.1"
    """Address the pings and sipp's SIP and RTP use (sipp's -i / -mi)."""
    transport: Literal["udp", "tcp"] = "udp"
    cluster_id: str = "CUCM-EMU"
    """Cluster id in the From parameters: the call keys are ``<cluster id>:<x-refci>``."""
    invite_timeout_s: float = 5.0
    """How long an INVITE waits for its answer before the next member is tried."""

    def destinations(self) -> list[Destination]:
        return [Destination.parse(part.strip()) for part in self.recorders.split(",") if part]

    def timing(self) -> PingTiming:
        return PingTiming(
            self.ping_interval_s,
            self.out_of_service_ping_interval_s,
            self.ping_retries,
            self.ping_retry_interval_s,
        )

    def cucm(self, on_change: Callable[[ServiceChange], None] | None = None) -> Cucm:
        return Cucm(
            self.destinations(),
            self.routing,
            self.timing(),
            local_ip=self.local_ip,
            transport=self.transport,
            cluster=self.cluster_id,
            invite_timeout_s=self.invite_timeout_s,
            on_change=on_change,
        )
