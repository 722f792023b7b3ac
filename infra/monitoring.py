"""Prometheus (the Debian package) scraping the callrec exporter and evaluating its alert rules.

The scrape configuration is written from here at each start (the exporter's address and the
intervals are settings); the alert rules are the files in `infra/prometheus/rules/`, tested by
promtool in tests/exporter.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from callrec.infra.procs import ManagedProcess, ensure_port_free, require_tool

PROMETHEUS_DIR = Path(__file__).parent / "prometheus"
RULE_FILES = tuple(sorted((PROMETHEUS_DIR / "rules").glob("*.yml")))
EXPORTER_JOB = "callrec-exporter"


def scrape_config(exporter: str, interval_s: float, rule_files: tuple[Path, ...]) -> str:
    """prometheus.yml (JSON is YAML): one job for the exporter, rules evaluated as often."""
    interval = f"{interval_s:g}s"
    return json.dumps({
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": interval},
        "rule_files": [str(path.resolve()) for path in rule_files],
        "scrape_configs": [{"job_name": EXPORTER_JOB,
                            "static_configs": [{"targets": [exporter]}]}],
    }, indent=2)


@dataclass
class PrometheusServer:
    """Prometheus on loopback, data (TSDB, config, log, PID) under ``data_dir``."""

    data_dir: Path
    exporter: str
    """host:port of the exporter's /metrics."""
    port: int = 9090
    host: str = "127.0.0.1"
    scrape_interval_s: float = 5.0
    retention: str = "15d"
    rule_files: tuple[Path, ...] = field(default=RULE_FILES)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess("prometheus", self.data_dir)

    def start(self, timeout: float = 30.0) -> None:
        if self.process.pid() is not None:
            return
        binary = require_tool("prometheus", "apt-get install prometheus (./run installs it)")
        ensure_port_free(self.host, self.port, "Prometheus")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "prometheus.yml"
        config.write_text(scrape_config(self.exporter, self.scrape_interval_s, self.rule_files))
        self.process.start([
            binary, f"--config.file={config}", f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address={self.host}:{self.port}",
        ])
        self.process.wait_healthy(self.healthy, timeout)

    def stop(self) -> bool:
        return self.process.stop(timeout=20)

    def healthy(self) -> bool:
        return http_ok(f"{self.url}/-/ready")


def http_ok(url: str) -> bool:
    """True when ``url`` answers 200 within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
