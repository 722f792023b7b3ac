"""What the emulator is told (destinations) and what it reports (calls, service changes).

Pydantic models, so `callrec cucm run --report` and `serve` can write them as JSON as they are.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from callrec.emulator.availability import State
from callrec.emulator.errors import BadDestination


class Destination(BaseModel):
    """A recorder as a SIP trunk destination of the route group."""

    model_config = ConfigDict(frozen=True)

    name: str
    host: str
    port: int = 5060
    local_ip: str | None = None
    """This CUCM node's own address on the link to the recorder, when each recorder has its
    own link (so cutting one link leaves the other usable); None: the node's local_ip."""

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``NAME=HOST:PORT[@LOCAL_IP]`` (or ``NAME=HOST``), as given on the command line."""
        name, sep, rest = text.partition("=")
        address, _, local_ip = rest.partition("@")
        host, _, port = address.rpartition(":") if ":" in address else (address, "", "5060")
        if not sep or not name or not host or not port.isdigit():
            raise BadDestination(f"destination {text!r} is not NAME=HOST:PORT[@LOCAL_IP]")
        return cls(name=name, host=host, port=int(port), local_ip=local_ip or None)


class AttemptResult(StrEnum):
    COMPLETED = "completed"
    """Answered, media played, BYE answered: the leg was recorded."""
    FAILED_AFTER_ANSWER = "failed-after-answer"
    """Answered, then the dialog broke (e.g. the recorder died): CUCM does not re-route it."""
    REFUSED = "refused"
    """A 4xx/5xx/6xx final response to the INVITE: CUCM tries the next member."""
    TIMEOUT = "timeout"
    """No answer in time: CUCM tries the next member."""
    FAILED = "failed"
    """Never answered for another reason (e.g. no TCP connection): CUCM tries the next member."""

    @property
    def answered(self) -> bool:
        return self in (AttemptResult.COMPLETED, AttemptResult.FAILED_AFTER_ANSWER)


class Attempt(BaseModel):
    recorder: str
    result: AttemptResult
    status: int | None = None
    detail: str = ""
    started_at: datetime
    ended_at: datetime


class LegReport(BaseModel):
    leg: Literal["near-end", "far-end"]
    recorder: str | None
    """The destination that answered the leg; None when no member took it (not recorded)."""
    attempts: list[Attempt]


class CallReport(BaseModel):
    call_key: str
    started_at: datetime
    ended_at: datetime
    legs: list[LegReport]

    @property
    def recorders(self) -> set[str | None]:
        return {leg.recorder for leg in self.legs}

    def summary(self) -> str:
        """One line per call, plus one per leg that needed more than one attempt."""
        seconds = (self.ended_at - self.started_at).total_seconds()
        legs = ", ".join(f"{leg.leg} -> {leg.recorder or 'NOT RECORDED'}" for leg in self.legs)
        lines = [f"{self.call_key}  {legs}  ({seconds:.1f} s)"]
        for leg in self.legs:
            if len(leg.attempts) > 1 or leg.recorder is None:
                tries = "; ".join(
                    f"{a.recorder} {a.result}{f' {a.status}' if a.status else ''}"
                    for a in leg.attempts
                )
                lines.append(f"    {leg.leg}: {tries or 'no member in service'}")
        return "\n".join(lines)


class ServiceChange(BaseModel):
    destination: str
    state: State
    at: datetime


class RunReport(BaseModel):
    """What `callrec cucm run --report` writes."""

    calls: list[CallReport]
    service_history: list[ServiceChange]
