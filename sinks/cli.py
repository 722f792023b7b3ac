"""`callrec mixer ...`: run the mixer worker; make the manifest key; write and verify the signed
daily manifests."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from callrec.sinks.archived import announced_on
from callrec.sinks.errors import ManifestKeyError
from callrec.sinks.health import check_health
from callrec.sinks.main import main, store_from
from callrec.sinks.manifests import ManifestWriter, generate_key, load_public_key, verify_day
from callrec.sinks.settings import HealthSettings, KeySettings, MixerSettings

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
def keygen(
    key: Annotated[
        Path | None, typer.Option(help="Where to write it; default CALLREC_MIXER_MANIFEST_KEY.")
    ] = None,
) -> None:
    """Create the Ed25519 key that signs the daily manifests (once; never over an existing one)."""
    path = key or KeySettings().mixer_manifest_key
    try:
        public = generate_key(path)
    except ManifestKeyError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created {path} (mode 0600) and its public key {public}: keep a copy of the "
               "public key outside this machine and pin it (CALLREC_MIXER_MANIFEST_PUBLIC_KEY, "
               "CALLREC_API_MANIFEST_PUBLIC_KEY)")


@app.command()
def manifest(day: Day = None) -> None:
    """Write (or rewrite) the signed integrity manifest of one day's recordings."""
    settings = MixerSettings()  # type: ignore[call-arg]  # values come from the env
    store = store_from(settings)
    try:
        writer = ManifestWriter(store, settings.mixer_manifest_key, settings.mixer_retention_days)
    except ManifestKeyError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    store.object_lock = store.has_object_lock()
    name, count = writer.write_day(_day(day))
    typer.echo(f"{name}: {count} recordings, signed with {settings.mixer_manifest_key}")


@app.command()
def verify(
    day: Day = None,
    public_key: Annotated[
        Path | None,
        typer.Option(help="Pinned Ed25519 public key (PEM); default "
                          "CALLREC_MIXER_MANIFEST_PUBLIC_KEY. The copy in the bucket is never "
                          "trusted."),
    ] = None,
) -> None:
    """Check a day's manifest signature against the pinned key, re-hash every recording, hold
    every RecordingArchived of the day against the store and the manifest; exit 1 on failure."""
    settings = MixerSettings()  # type: ignore[call-arg]  # values come from the env
    pinned = public_key or settings.mixer_manifest_public_key
    if pinned is None:
        typer.echo("error: no pinned public key: pass --public-key or set "
                   "CALLREC_MIXER_MANIFEST_PUBLIC_KEY", err=True)
        raise typer.Exit(2)
    when = _day(day)
    announced = asyncio.run(announced_on(settings.kafka_bootstrap, settings.s3_bucket, when))
    report = verify_day(store_from(settings), when, load_public_key(pinned), announced)
    typer.echo(f"{report.manifest}: signature ok, {report.checked} recordings checked, "
               f"{len(announced)} announcements")
    for label, keys in (("MISMATCH", report.mismatched), ("MISSING", report.missing),
                        ("NOT IN MANIFEST", report.unlisted), ("ANNOUNCED", report.announced)):
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
