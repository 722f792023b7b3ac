"""The exporter under test, scraped over HTTP like Prometheus would, and waits on its series."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Series:
    """GET /metrics, parsed: {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(series: Series, name: str, **labels: str) -> float | None:
    return series.get((name, tuple(sorted(labels.items()))))


async def wait_until(check: Callable[[], bool], within_s: float, what: str,
                     every_s: float = 0.25) -> float:
    """Poll ``check`` (run in a thread: it may do blocking I/O) until true; seconds it took.
    A server not listening yet (connection refused) counts as not yet."""
    started = time.monotonic()
    while not await asyncio.to_thread(_quietly, check):
        if time.monotonic() - started > within_s:
            raise AssertionError(f"not within {within_s} s: {what}")
        await asyncio.sleep(every_s)
    return time.monotonic() - started


def _quietly(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except OSError:
        return False
