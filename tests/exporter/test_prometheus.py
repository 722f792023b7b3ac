"""A real Prometheus scrapes a real exporter while calls go through a real call-state worker and
mixer: every PromQL expression of every dashboard panel returns data, the figures are the calls',
and RecorderDown fires and resolves live."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from callrec.infra.kafka import KafkaBroker
from callrec.infra.monitoring import RULE_FILES, PrometheusServer, http_ok
from callrec.infra.procs import ManagedProcess, free_port
from callrec.infra.s3 import S3Server
from tests.exporter.harness import scrape, value, wait_until
from tests.sinks.harness import mixer_env, new_cluster
from tests.streams.factory import Call
from tests.streams.harness import StreamsWorker, heartbeats, publish

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

DASHBOARD = Path(__file__).parents[2] / "infra/grafana/dashboards/callrec.json"
SCRAPE_S = 1.0
FOR_S = 3
LOST_AFTER_S = 2
CALLS = 3
CHUNKS = 5


@dataclass
class Site:
    prometheus: PrometheusServer
    exporter_url: str
    recorder: str
    cluster: str
    streams_group: str


def short_rules(tmp: Path) -> tuple[Path, ...]:
    """The real rules with every `for:` cut to FOR_S, so a live alert fires in seconds."""
    copies = []
    for path in RULE_FILES:
        copy = tmp / path.name
        copy.write_text(re.sub(r"for: \w+", f"for: {FOR_S}s", path.read_text()))
        copies.append(copy)
    return tuple(copies)


@pytest.fixture
def site(kafka: KafkaBroker, s3: S3Server, tmp_path: Path) -> Iterator[Site]:
    tag = uuid.uuid4().hex[:8]
    cluster = new_cluster()
    streams = StreamsWorker(kafka.bootstrap, f"exp-streams-{tag}", tmp_path, f"streams-{tag}")
    mixer = ManagedProcess("mixer", tmp_path / "mixer")
    exporter = ManagedProcess("exporter", tmp_path / "exporter")
    port = free_port()
    prometheus = PrometheusServer(tmp_path / "prometheus", f"127.0.0.1:{port}", port=free_port(),
                                  scrape_interval_s=SCRAPE_S, rule_files=short_rules(tmp_path))
    try:
        streams.start()
        mixer.start([sys.executable, "-m", "callrec.cli", "mixer", "worker"],
                    mixer_env(kafka, s3, tmp_path / "mixer", cluster))
        exporter.start([sys.executable, "-m", "callrec.cli", "metrics", "serve"], {
            "CALLREC_KAFKA_BOOTSTRAP": kafka.bootstrap, "CALLREC_EXPORTER_PORT": str(port),
            "CALLREC_EXPORTER_RECORDER_LOST_AFTER_S": str(LOST_AFTER_S),
            "CALLREC_EXPORTER_LAG_INTERVAL_S": "1", "CALLREC_EXPORTER_LOOKBACK_S": "120",
        })
        prometheus.start()
        url = f"http://127.0.0.1:{port}/metrics"
        exporter.wait_healthy(lambda: http_ok(url), 30)
        streams.wait_assigned()
        yield Site(prometheus, url, f"rec-{tag}", cluster, f"exp-streams-{tag}")
    finally:
        prometheus.stop()
        exporter.stop()
        mixer.stop()
        streams.stop()


def query(prometheus: PrometheusServer, expr: str) -> list[dict[str, Any]]:
    """An instant query through Prometheus' HTTP API: its result vector."""
    params = urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(f"{prometheus.url}/api/v1/query?{params}", timeout=5) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{expr}: {e.read().decode()}") from e
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def scalar(prometheus: PrometheusServer, expr: str) -> float | None:
    result = query(prometheus, expr)
    return float(result[0]["value"][1]) if result else None


def panel_queries(recorder: str) -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel, the dashboard's variables filled in
    as Grafana would for this recorder."""
    board = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"].replace("$recorder", recorder)
             .replace("$__rate_interval", "1m"))
            for panel in board["panels"] for target in panel["targets"]]


def firing(prometheus: PrometheusServer, alert: str, recorder: str) -> bool:
    with urllib.request.urlopen(f"{prometheus.url}/api/v1/alerts", timeout=5) as response:
        alerts = json.loads(response.read())["data"]["alerts"]
    return any(a["labels"].get("alertname") == alert and a["labels"].get("recorder") == recorder
               and a["state"] == "firing" for a in alerts)


async def test_every_panel_has_data_and_the_figures_are_the_calls(site: Site,
                                                                  kafka: KafkaBroker) -> None:
    prom, recorder = site.prometheus, site.recorder
    live = {recorder: "inc-1"}
    async with heartbeats(kafka.bootstrap, live):
        now = time.time_ns() // 1000
        calls = [Call(key=f"{site.cluster}:{n}", t0=now, recorder=recorder)
                 for n in range(1000, 1000 + CALLS)]
        await publish(kafka.bootstrap, [e for call in calls for e in call.simple(CHUNKS)])

        def figures_arrived() -> bool:
            return (scalar(prom, f'sum(callrec_calls_completed_total{{recorder="{recorder}"}})')
                    == CALLS and scalar(prom, f'sum(callrec_recordings_archived_total'
                                              f'{{cluster="{site.cluster}"}})') == CALLS)

        await wait_until(figures_arrived, 60, "3 calls completed and archived, in Prometheus")
        empty: list[str] = []

        def every_panel_has_data() -> bool:
            empty[:] = [f"{title}: {expr}" for title, expr in panel_queries(recorder)
                        if not query(prom, expr)]
            return not empty

        try:
            await wait_until(every_panel_has_data, 20, "every panel expression has a series")
        except AssertionError as e:
            raise AssertionError(f"{e}; empty: {empty}") from None
        r = f'recorder="{recorder}"'
        assert scalar(prom, f"sum(callrec_calls_started_total{{{r}}})") == CALLS
        assert scalar(prom, f"sum(callrec_calls_abnormal_total{{{r}}})") == 0
        assert scalar(prom, f"sum(callrec_audio_packets_received_total{{{r}}})") \
            == CALLS * 2 * CHUNKS * 10
        assert scalar(prom, f"sum(callrec_audio_packets_lost_total{{{r}}})") == 0
        assert scalar(prom, f"callrec_recorder_in_service{{{r}}}") == 1
        assert scalar(prom, f"sum(callrec_calls_active{{{r}}})") == 0
        assert (scalar(prom, "sum(callrec_archive_latency_seconds_count)") or 0) >= CALLS
        lag = query(prom, f'callrec_consumer_group_lag_records{{group="{site.streams_group}"}}')
        assert lag, "the call-state worker's group has a lag series"

        # A recorder goes silent: RecorderDown fires within its `for:` (plus a scrape and a rule
        # evaluation) of the exporter saying so; it resolves when the heartbeats come back.
        del live[recorder]
        await wait_until(lambda: value(scrape(site.exporter_url), "callrec_recorder_up",
                                       recorder=recorder) == 0, LOST_AFTER_S + 5,
                         "the exporter marks the silent recorder down")
        bound = FOR_S + SCRAPE_S + SCRAPE_S + 2  # for + a scrape + a rule evaluation + polling
        took = await wait_until(lambda: firing(prom, "RecorderDown", recorder), bound,
                                "RecorderDown fires")
        print(f"RecorderDown fired {took:.1f} s after the exporter saw the recorder down")
        live[recorder] = "inc-2"
        await wait_until(lambda: not firing(prom, "RecorderDown", recorder), 2 * SCRAPE_S + 4,
                         "RecorderDown resolves once the recorder beats again")
    await asyncio.sleep(0)
