"""`callrec mixer ...`: run the mixer worker, write and verify the signed daily manifests."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from callrec.sinks.health import check_health
from callrec.sinks.main import main, store_from
from callrec.sinks.manifests import (
    ManifestWriter,
    load_public_key,
    public_key_path,
    verify_day,
)
from callrec.sinks.settings import HealthSettings, MixerSettings

app = typer.Typer(help="The mixer and archiver (sinks/).", no_args_is_help=True)
Day = Annotated[
    str | None, typer.Option(help="UTC day YYYY-MM-DD; default yesterday.", show_default=False)
]


def _day(value: str | None) -> date:
    if value is None:
        return (datetime.now(UTC) - timedelta(days=1)).date()
    return date.fromisoformat(value)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


@app.command()
def worker() -> None:
    """Consume audio and call records, archive every ended call (CALLREC_MIXER_* settings)."""
    run_worker()


def run_worker() -> None:
    _logging()
    asyncio.run(main(MixerSettings()))  # type: ignore[call-arg]  # values come from the env


@app.command()
def manifest(day: Day = None) -> None:
    """Write (or rewrite) the signed integrity manifest of one day's recordings."""
    settings = MixerSettings()  # type: ignore[call-arg]  # values come from the env
    store = store_from(settings)
    name, count = ManifestWriter(store, settings.mixer_manifest_key).write_day(_day(day))
    typer.echo(f"{name}: {count} recordings, signed with {settings.mixer_manifest_key}")


@app.command()
def verify(
    day: Day = None,
    public_key: Annotated[
        Path | None,
        typer.Option(help="Ed25519 public key (PEM); default: beside CALLREC_MIXER_MANIFEST_KEY."),
    ] = None,
) -> None:
    """Check a day's manifest signature, re-hash every recording it lists; exit 1 on failure."""
    settings = MixerSettings()  # type: ignore[call-arg]  # values come from the env
    key = load_public_key(public_key or public_key_path(settings.mixer_manifest_key))
    report = verify_day(store_from(settings), _day(day), key)
    typer.echo(f"{report.manifest}: signature ok, {report.checked} recordings checked")
    for label, keys in (("MISMATCH", report.mismatched), ("MISSING", report.missing),
                        ("not in manifest", report.unlisted)):
        for k in keys:
            typer.echo(f"{label}: {k}")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def health(
    max_age: Annotated[float, typer.Option(help="Seconds the status file may be old.")] = 10.0,
) -> None:
    """Exit 0 if the worker's health file is fresh and says running, else 1."""
    ok, detail = check_health(HealthSettings().mixer_health_file, max_age)
    typer.echo(detail)
    if not ok:
        raise typer.Exit(1)
