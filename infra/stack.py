"""The whole recording stack on one machine: real Kafka, the S3 server, then our own processes,
then the metrics exporter and Prometheus.

Each part is a ``Service`` with start / stop / status, started in order and stopped in reverse,
tracked by PID files under ``var/run`` so `up`, `status` and `down` work from any shell.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from callrec.health import judge
from callrec.infra.kafka import KafkaBroker, ensure_kafka_jars, kafka_libs_dir
from callrec.infra.monitoring import PrometheusServer, http_ok
from callrec.infra.procs import ManagedProcess
from callrec.infra.s3 import S3Server, ensure_versitygw, versitygw_path
from callrec.infra.s3_accounts import S3Account, account_file, provision
from callrec.infra.topics import ensure_topics
from callrec.settings import CommonSettings
from callrec.sinks.manifests import generate_key, public_key_path


class StackSettings(CommonSettings):
    var_dir: Path = Path("var")
    """Runtime state: Kafka's log, PID files, process logs, credentials."""
    nas_dir: Path | None = None
    """The NAS path the S3 server keeps recordings in (default: <var_dir>/nas)."""
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "callrec")
    """Downloads and builds shared by every clone: Kafka jars, the S3 server binary."""
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap: str = "768m"
    s3_port: int = 9000
    partitions: int = 6
    """Partitions of each call-keyed topic; fixed once the topics exist."""
    s3_bucket: str = "recordings"
    recorder_sip_host: str = "127.0.0.1"
    recorder_sip_port: int = 5060
    """Where the stack's recorder listens (its own settings read the same variables)."""
    exporter_port: int = 9479
    """The metrics exporter's /metrics on 127.0.0.1 (its own settings read the same variable)."""
    mixer_retention_mode: str = "COMPLIANCE"
    mixer_retention_days: int = 1827
    """The bucket's default object lock retention (the mixer's own settings read the same)."""
    prometheus_port: int = 9090
    prometheus_scrape_interval_s: float = 5.0

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"
    api_port: int = 8080
    """The REST server and page, on 127.0.0.1 (its own settings read the same variable)."""

    @property
    def nas(self) -> Path:
        return self.nas_dir or self.var_dir / "nas"

    @property
    def api_dir(self) -> Path:
        return self.var_dir.resolve() / "api"

    @property
    def api_tokens_file(self) -> Path:
        return self.api_dir / "tokens.json"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    healthy: bool
    detail: str


@dataclass
class Service:
    name: str
    start: Callable[[], None]
    stop: Callable[[], bool]
    pid: Callable[[], int | None]
    healthy: Callable[[], bool]
    detail: str

    def status(self) -> ServiceStatus:
        pid = self.pid()
        return ServiceStatus(self.name, pid, pid is not None and self.healthy(), self.detail)


def s3_credentials(settings: StackSettings) -> tuple[str, str]:
    """The S3 root credentials: made once per stack, kept out of argv and out of git."""
    root = account_file(settings.var_dir / "s3-credentials.json", "callrec")
    return root.access_key, root.secret_key


def mixer_account(settings: StackSettings) -> S3Account:
    """The mixer's own S3 account (infra/s3_accounts.py), not root's."""
    return account_file(settings.var_dir / "s3-mixer-credentials.json", "mixer")


def reader_account(settings: StackSettings) -> S3Account:
    """The read-only S3 account of the REST server and the exporter (infra/s3_accounts.py)."""
    return account_file(settings.var_dir / "s3-reader-credentials.json", "reader")


def s3_env(s3: S3Server, account: S3Account) -> dict[str, str]:
    """What a process that uses S3 is told: where, and as which account (never root)."""
    return {"CALLREC_S3_ENDPOINT": s3.endpoint, "CALLREC_S3_ACCESS_KEY": account.access_key,
            "CALLREC_S3_SECRET_KEY": account.secret_key}


def with_manifest_key(path: Path, start: Callable[[], None]) -> Callable[[], None]:
    """`up` makes the manifest signing key once, out loud (`callrec mixer keygen`)."""
    def start_with_key() -> None:
        if not path.exists():
            print(f"creating the manifest signing key {path} (callrec mixer keygen); its "
                  f"public key {generate_key(path)} is pinned for verify and the API")
        start()
    return start_with_key


def kafka_broker(settings: StackSettings) -> KafkaBroker:
    return KafkaBroker(
        libs=kafka_libs_dir(settings.cache_dir), data_dir=settings.var_dir / "kafka",
        port=settings.kafka_port, controller_port=settings.kafka_controller_port,
        heap=settings.kafka_heap,
    )


def services(settings: StackSettings) -> list[Service]:
    broker = kafka_broker(settings)
    access, secret = s3_credentials(settings)
    s3 = S3Server(binary=versitygw_path(settings.cache_dir), data_dir=settings.nas,
                  state_dir=settings.var_dir / "s3", access_key=access, secret_key=secret,
                  port=settings.s3_port)

    def start_kafka() -> None:
        ensure_kafka_jars(settings.cache_dir)
        broker.start()
        asyncio.run(ensure_topics(broker.bootstrap, settings.partitions))

    def start_s3() -> None:
        ensure_versitygw(settings.cache_dir)
        s3.start()
        provision(s3.endpoint, S3Account(access, secret), settings.s3_bucket,
                  mixer_account(settings), settings.mixer_retention_mode,
                  settings.mixer_retention_days, reader_account(settings))

    return [
        Service("kafka", start_kafka, broker.stop, broker.process.pid, broker.healthy,
                f"{broker.bootstrap}  data {broker.data_dir}"),
        Service("s3", start_s3, s3.stop, s3.process.pid, s3.healthy,
                f"http://{s3.endpoint}  NAS {s3.data_dir}  credentials "
                f"{settings.var_dir / 's3-credentials.json'}"),
        *app_services(settings, s3),
        *monitoring_services(settings, s3),
    ]


def app_env(settings: StackSettings) -> dict[str, str]:
    """What every one of our processes is told about the stack (their settings read CALLREC_*);
    S3 credentials go only to those that use S3 (`s3_env`)."""
    return {"CALLREC_KAFKA_BOOTSTRAP": f"127.0.0.1:{settings.kafka_port}"}


def python_service(
    name: str, argv: list[str], env: dict[str, str], run_dir: Path, detail: str,
    healthy: Callable[[], bool] | None = None,
) -> Service:
    """One of our processes, run as `python -m callrec.cli ...` under a PID file."""
    process = ManagedProcess(name, run_dir)

    def start() -> None:
        if process.pid() is None:
            process.start([sys.executable, "-m", "callrec.cli", *argv], env)
            process.wait_healthy(healthy or (lambda: True), timeout=90)

    return Service(name, start, process.stop, process.pid,
                   healthy or (lambda: process.pid() is not None),
                   f"{detail}  log {process.log_file}")


def fresh_status(path: Path, max_age_s: float) -> bool:
    """A process's health record is fresh and says it is at work (callrec/health.py)."""
    return judge(path, max_age_s)[0]


def app_services(settings: StackSettings, s3: S3Server) -> list[Service]:
    """The call-state, mixer, recorder and REST processes, in start order."""
    run = settings.var_dir.resolve()
    env = app_env(settings)
    streams_dir = run / "streams"
    mixer_dir = run / "mixer"
    recorder_dir = run / "recorder"
    streams_env = {**env, "CALLREC_STREAMS_DATA_DIR": str(streams_dir),
                   "CALLREC_STREAMS_PARTITIONS": str(settings.partitions)}
    mixer_s3 = mixer_account(settings)
    manifest_key = mixer_dir / "manifest-ed25519.pem"
    mixer_env = {**env, **s3_env(s3, mixer_s3),
                 "CALLREC_MIXER_SPOOL_DIR": str(mixer_dir / "spool"),
                 "CALLREC_MIXER_HEALTH_FILE": str(mixer_dir / "health.json"),
                 "CALLREC_MIXER_MANIFEST_KEY": str(manifest_key),
                 "CALLREC_MIXER_MANIFEST_PUBLIC_KEY": str(public_key_path(manifest_key))}
    recorder_env = {**env, "CALLREC_RECORDER_DATA_DIR": str(recorder_dir)}
    api_dir = settings.api_dir
    api_url = f"http://127.0.0.1:{settings.api_port}"
    api_env = {**env, **s3_env(s3, reader_account(settings)),
               "CALLREC_API_DATA_DIR": str(api_dir),
               "CALLREC_API_PORT": str(settings.api_port),
               "CALLREC_API_TOKENS_FILE": str(settings.api_tokens_file),
               "CALLREC_API_SIGNING_KEY_FILE": str(api_dir / "playback.key"),
               "CALLREC_API_MANIFEST_PUBLIC_KEY": str(public_key_path(manifest_key))}
    mixer = python_service(
        "mixer", ["mixer", "worker"], mixer_env, mixer_dir,
        f"recordings to s3://{settings.s3_bucket}",
        lambda: fresh_status(mixer_dir / "health.json", 10),
    )
    mixer.start = with_manifest_key(manifest_key, mixer.start)
    return [
        python_service(
            "streams", ["streams", "worker"], streams_env, streams_dir, "call state",
            lambda: fresh_status(streams_dir / "health.json", 5),
        ),
        mixer,
        python_service(
            "recorder", ["recorder", "run"], recorder_env, recorder_dir,
            f"SIP {settings.recorder_sip_host}:{settings.recorder_sip_port} (UDP+TCP)",
            lambda: fresh_status(recorder_dir / "status.json", 3),
        ),
        python_service(
            "api", ["api", "serve"], api_env, api_dir, f"{api_url}/  (REST /api/v1, page)",
            lambda: http_ok(f"{api_url}/readyz"),
        ),
    ]


def monitoring_services(settings: StackSettings, s3: S3Server) -> list[Service]:
    """The exporter (Kafka -> /metrics), then Prometheus scraping it with the alert rules."""
    run = settings.var_dir.resolve()
    exporter_dir = run / "exporter"
    metrics_url = f"http://127.0.0.1:{settings.exporter_port}/metrics"
    prometheus = PrometheusServer(
        data_dir=run / "prometheus", exporter=f"127.0.0.1:{settings.exporter_port}",
        port=settings.prometheus_port, scrape_interval_s=settings.prometheus_scrape_interval_s)
    return [
        python_service(
            "exporter", ["metrics", "serve"],
            {**app_env(settings), **s3_env(s3, reader_account(settings)),
             "CALLREC_EXPORTER_PORT": str(settings.exporter_port)},
            exporter_dir, metrics_url, lambda: http_ok(metrics_url),
        ),
        Service("prometheus", prometheus.start, prometheus.stop, prometheus.process.pid,
                prometheus.healthy, f"{prometheus.url}  alerts {prometheus.url}/alerts  "
                f"data {prometheus.data_dir}"),
    ]


def up(settings: StackSettings, report: Callable[[str], None]) -> list[ServiceStatus]:
    for service in services(settings):
        report(f"starting {service.name} ...")
        service.start()
    return status(settings)


def down(settings: StackSettings, report: Callable[[str], None]) -> None:
    for service in reversed(services(settings)):
        report(f"{service.name}: {'stopped' if service.stop() else 'was not running'}")


def status(settings: StackSettings) -> list[ServiceStatus]:
    return [service.status() for service in services(settings)]
