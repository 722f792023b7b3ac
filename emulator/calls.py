"""Recorded calls as CUCM places them: an INVITE pair, each leg one sipp process.

One sipp process per leg gives each INVITE its own exit code and logs, so a refused leg can be
routed to the next member on its own, as CUCM does, while the other leg goes on.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from callrec.emulator.model import Attempt, AttemptResult, CallReport, Destination, LegReport
from callrec.emulator.ports import PortBook
from callrec.infra.procs import require_tool
from callrec.producers.metadata import call_key

CUCM_LEG_SCENARIO = Path(__file__).parent / "sipp" / "cucm_leg.xml"
REFUSED = re.compile(r"received 'SIP/2\.0 ([3-6]\d\d)")
UNBOUND = "Unable to bind"
"""sipp's start-up error when a port we probed free was taken before sipp bound it."""
BIND_RETRIES = 3
LEG_FLAGS: dict[Literal["near-end", "far-end"], str] = {
    "near-end": "x-nearend",
    "far-end": "x-farend",
}

Router = Callable[[list[str]], Destination | None]
"""Given the members that already refused this leg, the next destination to try (or None)."""


@dataclass(frozen=True)
class LegPlan:
    """What every attempt of one leg sends, wherever it is routed."""

    leg: Literal["near-end", "far-end"]
    cluster: str
    refci: str
    seconds: float
    local_ip: str
    transport: Literal["udp", "tcp"]
    invite_timeout_s: float
    work_dir: Path
    audio: Path
    """The raw A-law file the leg streams in a loop (`audio.write_loop`)."""
    ports: PortBook = field(compare=False)

    def keys(self) -> dict[str, str]:
        """The scenario's -key values: the From parameters CUCM puts on this leg."""
        return {
            "leg": LEG_FLAGS[self.leg],
            "refci": self.refci,
            "farrefci": str(int(self.refci) - 1),
            "cluster": self.cluster,
            "codecs": "8 101",
            "cause": "16",
            "stream": f"{self.audio},-1,8",
            "se": "1800",
        }


def classify(exit_code: int, answered: bool, errors: str) -> tuple[AttemptResult, int | None]:
    """An attempt's result from sipp's exit code, its "answered" log line and its error log."""
    if exit_code == 0:
        return AttemptResult.COMPLETED, None
    if answered:
        return AttemptResult.FAILED_AFTER_ANSWER, None
    if refused := REFUSED.search(errors):
        return AttemptResult.REFUSED, int(refused[1])
    if "timeout" in errors:
        return AttemptResult.TIMEOUT, None
    return AttemptResult.FAILED, None


async def play_leg(plan: LegPlan, target: Destination) -> Attempt:
    """Play one leg's dialog against one destination with sipp; always reaps the process.

    A sipp that could not bind its ports sent nothing, so it is started again on new ones.
    """
    started = datetime.now(UTC)
    for _ in range(BIND_RETRIES):
        exit_code, answered, errors = await _run_sipp(plan, target)
        if answered or UNBOUND not in errors:
            break
    result, status = classify(exit_code, answered, errors)
    detail = "" if result is AttemptResult.COMPLETED else _last_event(errors)
    return Attempt(
        recorder=target.name,
        result=result,
        status=status,
        detail=detail,
        started_at=started,
        ended_at=datetime.now(UTC),
    )


async def _run_sipp(plan: LegPlan, target: Destination) -> tuple[int, bool, str]:
    """One sipp process on leased ports: its exit code, whether it was answered, its errors."""
    sipp = require_tool("sipp", "install the Debian package sip-tester")
    run = plan.work_dir / f"{plan.refci}-{plan.leg}-{target.name}-{uuid.uuid4().hex[:6]}"
    log, err = run.with_suffix(".log"), run.with_suffix(".err")
    limit_s = plan.seconds + 2 * plan.invite_timeout_s + 10
    local_ip = target.local_ip or plan.local_ip
    with plan.ports.lease(local_ip, plan.transport) as ports:
        argv = [
            sipp, "-sf", str(CUCM_LEG_SCENARIO), "-m", "1", "-l", "1",
            "-i", local_ip, "-p", str(ports.sip), "-ci", local_ip, "-cp", str(ports.control),
            "-mi", local_ip, "-mp", str(ports.media),
            "-t", "t1" if plan.transport == "tcp" else "u1",
            "-d", str(int(plan.seconds * 1000)),
            "-recv_timeout", str(int(plan.invite_timeout_s * 1000)),
            "-timeout", f"{int(limit_s)}s", "-nostdin",
            "-trace_err", "-error_file", str(err), "-trace_logs", "-log_file", str(log),
        ]  # fmt: skip
        for name, value in plan.keys().items():
            argv += ["-key", name, value]
        argv.append(f"{target.host}:{target.port}")
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=plan.work_dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(), limit_s + 5)
        except TimeoutError:
            stderr = b"killed: sipp outlived its time limit (timeout)"
        finally:
            if proc.returncode is None:  # timed out, or the caller was cancelled
                proc.kill()
                await proc.wait()
    answered = log.exists() and "answered" in log.read_text(errors="replace")
    errors = (err.read_text(errors="replace") if err.exists() else "") + stderr.decode(
        errors="replace"
    )
    return proc.returncode or 0, answered, errors


def _last_event(errors: str) -> str:
    lines = [line for line in errors.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


async def place_leg(plan: LegPlan, route: Router) -> LegReport:
    """Offer the leg to the route group until a member answers it or none is left."""
    attempts: list[Attempt] = []
    while (target := route([a.recorder for a in attempts])) is not None:
        attempt = await play_leg(plan, target)
        attempts.append(attempt)
        if attempt.result.answered:
            return LegReport(leg=plan.leg, recorder=target.name, attempts=attempts)
    return LegReport(leg=plan.leg, recorder=None, attempts=attempts)


async def place_call(base: LegPlan, route: Router) -> CallReport:
    """Both legs of one recorded call, offered at the same time and routed one by one."""
    started = datetime.now(UTC)
    near, far = await asyncio.gather(
        place_leg(base, route),
        place_leg(replace(base, leg="far-end"), route),
    )
    return CallReport(
        call_key=call_key(base.cluster, base.refci),
        started_at=started,
        ended_at=datetime.now(UTC),
        legs=[near, far],
    )
