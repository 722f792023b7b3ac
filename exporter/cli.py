"""`callrec metrics ...`: serve the Prometheus exporter; write the Grafana dashboard."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from callrec.exporter.settings import ExporterSettings

app = typer.Typer(help="Prometheus metrics from the Kafka log (exporter/).", no_args_is_help=True)
DASHBOARD = Path("infra/grafana/dashboards/callrec.json")


@app.command()
def serve() -> None:
    """Serve /metrics (all settings from CALLREC_* / CALLREC_EXPORTER_* variables)."""
    from callrec.exporter.loop import serve as serve_metrics

    settings = ExporterSettings()
    logging.basicConfig(stream=sys.stderr, level=settings.exporter_log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # During a broker outage aiokafka logs every reconnect attempt (dozens a second); the
    # exporter's own warning per failed session says the same once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await serve_metrics(settings, stopping)

    asyncio.run(main())


@app.command()
def dashboard(
    out: Annotated[Path, typer.Option(help="Where to write the dashboard JSON.")] = DASHBOARD,
) -> None:
    """Generate the Grafana dashboard from exporter/dashboard.py (never edit the JSON)."""
    from callrec.exporter.dashboard import dashboard_json

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dashboard_json())
    typer.echo(f"wrote {out}")
