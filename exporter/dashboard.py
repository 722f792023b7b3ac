"""The Grafana dashboard, as code (grafana-foundation-sdk): `callrec metrics dashboard` writes
`infra/grafana/dashboards/callrec.json`, and a test fails when the file is not this output.

Each panel is a row of ``PANELS``: its PromQL is the exporter's vocabulary, and tests/exporter
runs every expression against a real Prometheus scraping a real exporter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableOption,
    VariableRefresh,
)

DATASOURCE = DataSourceRef(type_val="prometheus", uid="callrec-prometheus")
UID = "callrec-overview"
R = '{recorder=~"$recorder"}'
RATE = "[$__rate_interval]"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    single_stat: bool = False


def _quantiles(histogram: str) -> tuple[Query, ...]:
    return tuple(
        Query(f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{RATE})))",
              f"p{round(q * 100)}")
        for q in (0.5, 0.99)
    )


PANELS: tuple[PanelSpec, ...] = (
    PanelSpec("Recorders in service", "Recorders up and HEALTHY (taking calls) / up at all.",
              "short", (Query(f"sum(callrec_recorder_in_service{R})", "in service"),
                        Query(f"sum(callrec_recorder_up{R})", "up")), single_stat=True),
    PanelSpec("Active calls per recorder", "Calls in progress (call state) and legs being "
              "recorded (recorder heartbeats).", "short",
              (Query(f"sum by (recorder) (callrec_calls_active{R})", "{{recorder}} calls"),
               Query(f"sum by (recorder) (callrec_recorder_active_legs{R})",
                     "{{recorder}} legs"))),
    PanelSpec("Recorders refusing calls", "Recorders answering 503 to new calls, by reason "
              "(disk full or failing, Kafka unreachable, at capacity, ...); 0: none.", "short",
              (Query(f"count by (reason) (callrec_recorder_refusing{R}) or vector(0)",
                     "{{reason}}"),)),
    PanelSpec("Call rate", "Calls started and ended per second.", "reqps",
              (Query(f"sum by (recorder) (rate(callrec_calls_started_total{R}{RATE}))",
                     "{{recorder}} started"),
               Query(f"sum by (recorder) (rate(callrec_calls_completed_total{R}{RATE}))",
                     "{{recorder}} completed"))),
    PanelSpec("Abnormal calls by reason", "Calls ended abnormally per second, by reason.",
              "reqps", (Query(f"sum by (reason) (rate(callrec_calls_abnormal_total{R}{RATE}))",
                              "{{reason}}"),)),
    PanelSpec("Packet loss", "RTP packets lost before the recorder / packets expected.",
              "percentunit",
              (Query(f"sum by (recorder) (rate(callrec_audio_packets_lost_total{R}{RATE})) / "
                     f"clamp_min(sum by (recorder) (rate(callrec_audio_packets_received_total{R}"
                     f"{RATE}) + rate(callrec_audio_packets_lost_total{R}{RATE})), 1e-9)",
                     "{{recorder}}"),)),
    PanelSpec("Chunk latency", "A recorder closing a 200 ms chunk -> readable from Kafka.", "s",
              _quantiles("callrec_audio_chunk_delivery_seconds")),
    PanelSpec("Archive latency", "A call's end -> its recording announced in S3.", "s",
              _quantiles("callrec_archive_latency_seconds")),
    PanelSpec("Consumer lag per group", "Records not yet consumed, per consumer group.",
              "short", (Query("sum by (group) (callrec_consumer_group_lag_records)",
                              "{{group}}"),)),
    PanelSpec("Spool bytes", "Events a recorder holds on disk because Kafka does not take "
              "them, and the size at which it starts refusing new calls.", "bytes",
              (Query(f"sum by (recorder) (callrec_recorder_spool_bytes{R})", "{{recorder}}"),
               Query(f"max by (recorder) (callrec_recorder_spool_refuse_bytes{R})",
                     "{{recorder}} refuses calls above"))),
    PanelSpec("Mixer throughput", "Call audio archived per second of wall time (x real time) "
              "and calls still waiting for their recording.", "short",
              (Query(f"sum by (cluster) (rate(callrec_recorded_audio_seconds_total{RATE}))",
                     "{{cluster}} x real time"),
               Query("sum(callrec_calls_awaiting_recording)", "awaiting recording"))),
)


def _panel(spec: PanelSpec) -> timeseries.Panel | stat.Panel:
    builder: timeseries.Panel | stat.Panel = (
        stat.Panel() if spec.single_stat else timeseries.Panel())
    builder.title(spec.title).description(spec.description).unit(spec.unit)
    builder.datasource(DATASOURCE).height(8).span(8 if spec.single_stat else 12)
    for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
        builder.with_target(prometheus.Dataquery().expr(query.expr)
                            .legend_format(query.legend).ref_id(ref))
    return builder


def build() -> gd.Dashboard:
    recorder = (gd.QueryVariable("recorder").label("Recorder").datasource(DATASOURCE)
                .query("label_values(callrec_recorder_up, recorder)")
                .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
                .multi(True).include_all(True).all_value(".*")
                .current(VariableOption(selected=True, text="All", value="$__all")))
    board = (gd.Dashboard("callrec: call recording").uid(UID)
             .tags(["callrec"]).refresh("10s").time("now-1h", "now")
             .timezone("utc").tooltip(DashboardCursorSync.CROSSHAIR)
             .with_variable(recorder))
    for spec in PANELS:
        board.with_panel(_panel(spec))
    return board


def dashboard_json() -> str:
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
