"""`callrec cucm run|serve`: play CUCM toward recorders; flags override CALLREC_CUCM_*."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from callrec.emulator.cucm import Cucm
from callrec.emulator.model import CallReport, RunReport, ServiceChange
from callrec.emulator.routing import Distribution
from callrec.emulator.settings import EmulatorSettings
from callrec.errors import CallrecError

app = typer.Typer(help="A CUCM emulator: OPTIONS pings and recorded calls.", no_args_is_help=True)

Recorders = Annotated[
    list[str] | None, typer.Option("--recorder", help="NAME=HOST:PORT, repeat in priority order")
]
Routing = Annotated[Distribution | None, typer.Option(help="Route group distribution")]
PingInterval = Annotated[float | None, typer.Option(help="Ping period in service, s")]
OosInterval = Annotated[float | None, typer.Option(help="Ping period out of service, s")]
Retries = Annotated[int | None, typer.Option(help="OPTIONS retransmissions")]
RetryInterval = Annotated[float | None, typer.Option(help="Wait per transmission, s")]
LocalIp = Annotated[str | None, typer.Option(help="Local address for SIP and RTP")]
Transport = Annotated[str | None, typer.Option(help="udp or tcp")]
Cluster = Annotated[str | None, typer.Option("--cluster-id", help="Cluster id of the calls")]


def settings_from(flags: dict[str, Any]) -> EmulatorSettings:
    """CALLREC_CUCM_* settings with every flag that was given on top."""
    names = {
        "recorder": "recorders", "routing": "routing", "ping_interval": "ping_interval_s",
        "oos_interval": "out_of_service_ping_interval_s", "retries": "ping_retries",
        "retry_interval": "ping_retry_interval_s", "local_ip": "local_ip",
        "transport": "transport", "cluster_id": "cluster_id",
    }  # fmt: skip
    given = {names[k]: v for k, v in flags.items() if k in names and v is not None}
    if "recorders" in given:
        given["recorders"] = ",".join(given["recorders"])
    return EmulatorSettings(**given)


@app.command()
def run(
    recorder: Recorders = None,
    routing: Routing = None,
    ping_interval: PingInterval = None,
    oos_interval: OosInterval = None,
    retries: Retries = None,
    retry_interval: RetryInterval = None,
    local_ip: LocalIp = None,
    transport: Transport = None,
    cluster_id: Cluster = None,
    calls: Annotated[int, typer.Option(help="Concurrent recorded calls")] = 3,
    seconds: Annotated[float, typer.Option(help="Length of each call, s")] = 8.0,
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here")] = None,
) -> None:
    """Ping every recorder once, place the calls, print who got each leg; exit 1 if one was lost."""
    settings = settings_from(locals())
    result = asyncio.run(_run(settings.cucm(), calls, seconds))
    for change in result.service_history:
        typer.echo(f"{change.at:%H:%M:%S.%f}  {change.destination:<12} {change.state}")
    for call in result.calls:
        typer.echo(summary(call))
    if report is not None:
        report.write_text(result.model_dump_json(indent=2))
        typer.echo(f"report: {report}")
    if any(leg.recorder is None for call in result.calls for leg in call.legs):
        raise typer.Exit(1)


async def _run(cucm: Cucm, calls: int, seconds: float) -> RunReport:
    async with cucm:
        placed = await cucm.place_calls(calls, seconds)
    return RunReport(calls=placed, service_history=cucm.service_history)


def summary(call: CallReport) -> str:
    """One line per call, plus one per leg that needed more than one attempt."""
    seconds = (call.ended_at - call.started_at).total_seconds()
    legs = ", ".join(f"{leg.leg} -> {leg.recorder or 'NOT RECORDED'}" for leg in call.legs)
    lines = [f"{call.call_key}  {legs}  ({seconds:.1f} s)"]
    for leg in call.legs:
        if len(leg.attempts) > 1 or leg.recorder is None:
            tries = "; ".join(
                f"{a.recorder} {a.result}{f' {a.status}' if a.status else ''}" for a in leg.attempts
            )
            lines.append(f"    {leg.leg}: {tries or 'no member in service'}")
    return "\n".join(lines)


@app.command()
def serve(
    recorder: Recorders = None,
    routing: Routing = None,
    ping_interval: PingInterval = None,
    oos_interval: OosInterval = None,
    retries: Retries = None,
    retry_interval: RetryInterval = None,
    local_ip: LocalIp = None,
    transport: Transport = None,
    cluster_id: Cluster = None,
) -> None:
    """Keep pinging; read JSON commands from stdin, write JSON events to stdout, one per line.

    Commands: {"place": N, "seconds": S}, {"status": true}, {"quit": true} (or end of input).
    Events: "service" (a destination changed state), "ready", "calls" (a placed batch),
    "status", "error", "bye".
    """
    asyncio.run(_serve(settings_from(locals())))


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}, default=str) + "\n")
    sys.stdout.flush()


def _on_change(change: ServiceChange) -> None:
    emit("service", **change.model_dump(mode="json"))


async def _serve(settings: EmulatorSettings) -> None:
    batches: set[asyncio.Task[None]] = set()
    async with settings.cucm(_on_change) as cucm:
        emit("ready", states=cucm.states)
        while line := await asyncio.to_thread(sys.stdin.readline):
            command = _parse(line)
            if command is None:
                continue
            if "place" in command:
                try:
                    count, seconds = int(command["place"]), float(command.get("seconds", 8))
                except (TypeError, ValueError):
                    emit("error", reason=f"place needs a number of calls: {line.strip()!r}")
                    continue
                batch = asyncio.create_task(_place(cucm, count, seconds))
                batches.add(batch)
                batch.add_done_callback(batches.discard)
            elif command.get("status"):
                history = [c.model_dump(mode="json") for c in cucm.service_history]
                emit("status", states=cucm.states, history=history)
            elif command.get("quit"):
                break
            else:
                emit("error", reason=f"unknown command {line.strip()!r}")
        await asyncio.gather(*batches)  # calls under way end as they would, then we leave
    emit("bye")


def _parse(line: str) -> dict[str, Any] | None:
    try:
        command = json.loads(line)
    except ValueError:
        command = None
    if isinstance(command, dict):
        return command
    if line.strip():
        emit("error", reason=f"not a JSON object: {line.strip()!r}")
    return None


async def _place(cucm: Cucm, count: int, seconds: float) -> None:
    calls = await cucm.place_calls(count, seconds)
    emit("calls", calls=[c.model_dump(mode="json") for c in calls])


def main() -> None:
    try:
        app()
    except CallrecError as e:
        typer.echo(f"ERROR: {e}", err=True)
        raise SystemExit(1) from e
