"""`callrec streams ...`: run the call-state worker, check its health, replay the topics."""

from __future__ import annotations

import sys

import typer

from callrec.health import judge
from callrec.streams.settings import StreamsSettings

app = typer.Typer(help="The call-state worker (streams/).", no_args_is_help=True)


@app.command()
def worker() -> None:
    """Run a worker (all settings from CALLREC_* / CALLREC_STREAMS_* variables)."""
    from callrec.streams.main import run_worker

    run_worker(StreamsSettings())


@app.command()
def health(max_age_s: float = typer.Option(5.0, help="Oldest acceptable health file.")) -> None:
    """Exit 0 if the worker's health file is fresh, 1 otherwise (for the stack's probe)."""
    ok, why = judge(StreamsSettings().health_file, max_age_s)
    typer.echo(why, err=not ok)
    if not ok:
        raise typer.Exit(1)


@app.command()
def replay(
    settle_s: float = typer.Option(0.0, help="Only compare calls whose newest fact is older."),
    key_prefix: str = typer.Option("", help="Only compare calls whose key starts so."),
) -> None:
    """Rebuild every call from the start of the topics; report differences from rec.calls.v1."""
    from callrec.streams.replay import replay_and_compare

    report = replay_and_compare(StreamsSettings(), settle_s=settle_s,
                                only=lambda key: key.startswith(key_prefix))
    typer.echo(report.summary())
    for line in report.differences[:100]:
        typer.echo(line)
    sys.exit(0 if not report.differences else 1)
