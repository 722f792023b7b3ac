"""`callrec cucm run|serve`: play CUCM toward recorders; flags override CALLREC_CUCM_*."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from callrec.emulator.cucm import Cucm
from callrec.emulator.model import RunReport, ServiceChange
from callrec.emulator.routing import Distribution
from callrec.emulator.settings import EmulatorSettings
from callrec.errors import CallrecError

app = typer.Typer(help="A CUCM emulator: OPTIONS pings and recorded calls.", no_args_is_help=True)

FLAGS: dict[str, tuple[Any, str, str]] = {
    "recorder": (list[str], "recorders", "NAME=HOST:PORT, repeat in priority order"),
    "routing": (Distribution, "routing", "Route group distribution"),
    "ping_interval": (float, "ping_interval_s", "Ping period in service, s"),
    "oos_interval": (float, "out_of_service_ping_interval_s", "Ping period out of service, s"),
    "retries": (int, "ping_retries", "OPTIONS retransmissions"),
    "retry_interval": (float, "ping_retry_interval_s", "Wait per transmission, s"),
    "local_ip": (str, "local_ip", "Local address for SIP and RTP"),
    "transport": (str, "transport", "udp or tcp"),
    "cluster_id": (str, "cluster_id", "Cluster id of the calls"),
}
"""The flags `run` and `serve` share: type, the CALLREC_CUCM_* setting it overrides, help."""


def settings_from(flags: dict[str, Any]) -> EmulatorSettings:
    """CALLREC_CUCM_* settings with every flag that was given on top."""
    given = {FLAGS[k][1]: v for k, v in flags.items() if k in FLAGS and v is not None}
    if "recorders" in given:
        given["recorders"] = ",".join(given["recorders"])
    return EmulatorSettings(**given)


def with_settings(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command the shared flags; it receives their result as ``settings``."""
    own = inspect.signature(command, eval_str=True).parameters.values()
    shared = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[kind | None, typer.Option(help=help_text)],
        )
        for name, (kind, _, help_text) in FLAGS.items()
    ]

    @functools.wraps(command)
    def with_flags(**kwargs: Any) -> None:
        flags = {name: kwargs.pop(name) for name in FLAGS}
        command(settings=settings_from(flags), **kwargs)

    mine = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p.name != "settings"]
    with_flags.__signature__ = inspect.Signature(shared + mine)  # type: ignore[attr-defined]
    return with_flags


@app.command()
@with_settings
def run(
    settings: EmulatorSettings,
    calls: Annotated[int, typer.Option(help="Concurrent recorded calls")] = 3,
    seconds: Annotated[
        float, typer.Option(help="Length of each call, s; its legs stream audio throughout")
    ] = 8.0,
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here")] = None,
) -> None:
    """Ping every recorder once, place the calls, print who got each leg; exit 1 if one was lost."""
    result = asyncio.run(_run(settings.cucm(), calls, seconds))
    for change in result.service_history:
        typer.echo(f"{change.at:%H:%M:%S.%f}  {change.destination:<12} {change.state}")
    for call in result.calls:
        typer.echo(call.summary())
    if report is not None:
        report.write_text(result.model_dump_json(indent=2))
        typer.echo(f"report: {report}")
    if any(leg.recorder is None for call in result.calls for leg in call.legs):
        raise typer.Exit(1)


async def _run(cucm: Cucm, calls: int, seconds: float) -> RunReport:
    async with cucm:
        placed = await cucm.place_calls(calls, seconds)
    return RunReport(calls=placed, service_history=cucm.service_history)


@app.command()
@with_settings
def serve(settings: EmulatorSettings) -> None:
    """Keep pinging; read JSON commands from stdin, write JSON events to stdout, one per line.

    Commands: {"place": N, "seconds": S}, {"status": true}, {"quit": true} (or end of input).
    Events: "service" (a destination changed state), "ready", "calls" (a placed batch),
    "status", "error", "bye".
    """
    asyncio.run(_serve(settings))


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
