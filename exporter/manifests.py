"""Which day last got its signed integrity manifest: read from S3, where the mixer writes it.

The manifest of day D (`manifests/YYYY/MM/DD.sha256` and its `.sig`) is written after 01:00 UTC
on D+1, into the object store only: no event announces it, so the exporter looks for the
signature objects themselves, newest day first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from callrec.sinks.manifests import manifest_key

LOOK_BACK_DAYS = 7


def signature_key(day: date) -> str:
    return manifest_key(day) + ".sig"


def last_signed_day(exists: Callable[[str], bool], today: date,
                    back_days: int = LOOK_BACK_DAYS) -> date | None:
    """The newest day before ``today`` with a manifest signature, within ``back_days``."""
    for days in range(1, back_days + 1):
        day = today - timedelta(days=days)
        if exists(signature_key(day)):
            return day
    return None


def day_start_s(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
