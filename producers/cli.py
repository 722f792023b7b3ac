"""`callrec recorder ...`: run a recorder; flags override CALLREC_RECORDER_* variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from callrec.producers.settings import RecorderSettings

app = typer.Typer(help="The SIP recorder (producers/).", no_args_is_help=True)


@app.command()
def run(
    id: Annotated[str | None, typer.Option("--id", help="Recorder id")] = None,
    sip_host: Annotated[str | None, typer.Option(help="SIP listen address")] = None,
    sip_port: Annotated[int | None, typer.Option(help="SIP UDP port")] = None,
    rtp_ports: Annotated[str | None, typer.Option(help="RTP port range LOW-HIGH")] = None,
    allow: Annotated[str | None, typer.Option(help="Allowed peers, comma separated")] = None,
    max_legs: Annotated[int | None, typer.Option(help="Capacity in legs")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Spool and status directory")] = None,
    kafka_bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap")] = None,
    drain_timeout_s: Annotated[float | None, typer.Option(help="Seconds to let calls end")] = None,
) -> None:
    """Run a recorder until SIGTERM, then drain."""
    from callrec.producers.main import run_recorder

    flags: dict[str, Any] = {
        "id": id,
        "sip_host": sip_host,
        "sip_port": sip_port,
        "rtp_ports": rtp_ports,
        "allow": allow,
        "max_legs": max_legs,
        "data_dir": data_dir,
        "kafka_bootstrap": kafka_bootstrap,
        "drain_timeout_s": drain_timeout_s,
    }
    settings = RecorderSettings(**{k: v for k, v in flags.items() if v is not None})
    raise typer.Exit(run_recorder(settings))
