"""`callrec`: the one command line of the project; each package mounts its own sub-commands."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from callrec.api.cli import app as api_app
from callrec.emulator.cli import app as cucm_app
from callrec.errors import CallrecError
from callrec.exporter.cli import app as metrics_app
from callrec.infra import stack
from callrec.producers.cli import app as recorder_app
from callrec.sinks.cli import app as mixer_app
from callrec.streams.cli import app as streams_app

app = typer.Typer(help="Event-sourced call recording for Cisco UCM over Kafka.",
                  no_args_is_help=True)
app.add_typer(recorder_app, name="recorder")
app.add_typer(streams_app, name="streams")
app.add_typer(mixer_app, name="mixer")
app.add_typer(cucm_app, name="cucm")
app.add_typer(metrics_app, name="metrics")
app.add_typer(api_app, name="api")


def _print_status(statuses: list[stack.ServiceStatus]) -> bool:
    for s in statuses:
        state = "healthy" if s.healthy else ("UNHEALTHY" if s.pid else "STOPPED")
        typer.echo(f"{s.name:<10} {state:<9} pid {s.pid or '-':<8} {s.detail}")
    return all(s.healthy for s in statuses)


@app.command()
def up(
    demo: Annotated[
        bool,
        typer.Option("--demo", help="Then record 3 calls (one held 10 s) through CUCM's emulator"),
    ] = False,
) -> None:
    """Install what is missing (Kafka jars, the S3 server) and start the whole stack."""
    settings = stack.StackSettings()
    statuses = stack.up(settings, typer.echo)
    if not _print_status(statuses):
        raise typer.Exit(1)
    if demo:
        from callrec.emulator.demo import run_demo

        asyncio.run(run_demo(settings, typer.echo))
        typer.echo(f"Prometheus: {settings.prometheus_url}  (alerts: "
                   f"{settings.prometheus_url}/alerts; try sum(callrec_calls_completed_total))")
        from callrec.api.tokens import Role, TokenStore

        token = TokenStore(settings.api_tokens_file).add("demo-viewer", Role.viewer)
        typer.echo(f"\nListen to them: http://127.0.0.1:{settings.api_port}/  "
                   f"sign in with this viewer token (shown once):\n  {token}\n"
                   "More tokens: ./run api token add NAME --role viewer|auditor|admin")


@app.command()
def status() -> None:
    """Show each component's PID and health; exit 1 if any is not healthy."""
    if not _print_status(stack.status(stack.StackSettings())):
        raise typer.Exit(1)


@app.command()
def down() -> None:
    """Stop every component, newest first, by PID."""
    stack.down(stack.StackSettings(), typer.echo)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        app()
    except CallrecError as e:
        # Our errors already say what is wrong and what to do; a traceback would bury that.
        typer.echo(f"ERROR: {e}", err=True)
        raise SystemExit(1) from e


if __name__ == "__main__":
    main()
