"""The exporter's pure core: samples, heartbeats, calls and recordings -> series, no I/O."""

from __future__ import annotations

import math
import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from callrec.avro import codec
from callrec.avro.errors import UndecodableEvent
from callrec.avro.events import AbnormalReason, CallStatus, Leg, RecorderHealth
from callrec.exporter.collector import SelfStats, StateCollector
from callrec.exporter.errors import InvalidSample
from callrec.exporter.reader import event_time_us
from callrec.exporter.state import ExporterState
from tests.exporter.events import T0, archived, beat, call_record, sample, us
from tests.streams.factory import Call


def scrape(state: ExporterState, now_us: int) -> dict[str, float]:
    """The exposition as {series: value}, the way Prometheus would parse it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(state, SelfStats(), threading.Lock(), lambda: now_us / 1e6))
    text = generate_latest(registry).decode()
    return {line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_counters_sum_windows_per_recorder_and_skip_the_roll_up() -> None:
    state = ExporterState()
    for window in range(3):
        state.apply_sample(sample("calls_completed_total", 2, {"recorder": "rec-1"}, window))
        state.apply_sample(sample("calls_completed_total", 2, {}, window))  # the roll-up
    state.apply_sample(sample("calls_abnormal_total", 1,
                              {"recorder": "rec-1", "reason": "MEDIA_TIMEOUT"}, 0))
    series = scrape(state, T0)
    assert series['callrec_calls_completed_total{recorder="rec-1"}'] == 6
    assert series['callrec_calls_abnormal_total{reason="MEDIA_TIMEOUT",recorder="rec-1"}'] == 1
    # every reason of a known recorder is there from the start, at 0
    for reason in AbnormalReason:
        assert f'callrec_calls_abnormal_total{{reason="{reason.value}",recorder="rec-1"}}' in series


def test_a_window_read_twice_counts_once() -> None:
    state = ExporterState()
    for _ in range(2):
        state.apply_sample(sample("audio_packets_lost_total", 5, {"recorder": "rec-1"}, 0))
    assert scrape(state, T0)['callrec_audio_packets_lost_total{recorder="rec-1"}'] == 5


def test_gauges_sum_over_workers_and_drop_to_zero_when_gone_from_the_window() -> None:
    state = ExporterState()
    state.apply_sample(sample("calls_active", 3, {"recorder": "rec-1"}, 0, producer="w1"))
    state.apply_sample(sample("calls_active", 2, {"recorder": "rec-1"}, 0, producer="w2"))
    assert scrape(state, T0 + us(10))['callrec_calls_active{recorder="rec-1"}'] == 5
    state.apply_sample(sample("calls_active", 0, {}, 1, producer="w1"))  # w1: no active calls
    assert scrape(state, T0 + us(20))['callrec_calls_active{recorder="rec-1"}'] == 2
    # w2 stopped reporting long ago: its calls belong to another worker now
    assert scrape(state, T0 + us(120))['callrec_calls_active{recorder="rec-1"}'] == 0


@pytest.mark.parametrize(("metric", "value", "labels"), [
    ("calls_completed_total", -1.0, {"recorder": "rec-1"}),
    ("calls_completed_total", math.nan, {"recorder": "rec-1"}),
    ("calls_completed_total", 1.0, {"recorder": "rec-1", "call_key": "c:1"}),
    ("calls_abnormal_total", 1.0, {"recorder": "rec-1"}),
])
def test_a_sample_no_series_can_take_is_invalid(
    metric: str, value: float, labels: dict[str, str]
) -> None:
    with pytest.raises(InvalidSample):
        ExporterState().apply_sample(sample(metric, value, labels, 0))


def test_an_unknown_metric_is_ignored_and_counted() -> None:
    state = ExporterState()
    state.apply_sample(sample("tomorrows_metric", 1, {}, 0))
    state.apply_sample(sample("recorder_up", 1, {"recorder": "rec-1"}, 0))  # known, elsewhere
    assert state.samples_ignored == 1


def test_a_recorder_is_up_while_it_beats_and_in_service_while_healthy() -> None:
    state = ExporterState(recorder_lost_after_s=5)
    state.apply_heartbeat(beat("rec-1", T0, spool_bytes=4096))
    state.apply_heartbeat(beat("rec-2", T0, health=RecorderHealth.DRAINING))
    series = scrape(state, T0 + us(2))
    assert series['callrec_recorder_up{recorder="rec-1"}'] == 1
    assert series['callrec_recorder_in_service{recorder="rec-1"}'] == 1
    assert series['callrec_recorder_in_service{recorder="rec-2"}'] == 0
    assert series['callrec_recorder_spool_bytes{recorder="rec-1"}'] == 4096
    later = scrape(state, T0 + us(6))
    assert later['callrec_recorder_up{recorder="rec-1"}'] == 0
    assert later['callrec_recorder_in_service{recorder="rec-1"}'] == 0
    # an old heartbeat read late does not bring it back
    state.apply_heartbeat(beat("rec-1", T0 - us(10)))
    assert scrape(state, T0 + us(6))['callrec_recorder_up{recorder="rec-1"}'] == 0


def test_a_recorder_refusing_calls_says_why_while_it_is_up() -> None:
    state = ExporterState(recorder_lost_after_s=5)
    state.apply_heartbeat(beat("rec-1", T0, health=RecorderHealth.UNAVAILABLE,
                               reasons=("disk full", "spool above its threshold")))
    state.apply_heartbeat(beat("rec-2", T0))
    series = scrape(state, T0 + us(2))
    refusing = {k: v for k, v in series.items() if k.startswith("callrec_recorder_refusing")}
    assert refusing == {
        'callrec_recorder_refusing{reason="disk full",recorder="rec-1"}': 1,
        'callrec_recorder_refusing{reason="spool above its threshold",recorder="rec-1"}': 1,
    }
    assert series['callrec_recorder_in_service{recorder="rec-1"}'] == 0
    gone = scrape(state, T0 + us(6))  # a silent recorder is RecorderDown, not refusing
    assert not any(k.startswith("callrec_recorder_refusing") for k in gone)


def test_archive_latency_is_the_calls_end_to_its_recording() -> None:
    state = ExporterState()
    call = Call(t0=T0)
    state.apply_call(call_record(call, CallStatus.ACTIVE, ended_s=None))
    assert state.awaiting_recording == {}
    state.apply_call(call_record(call, CallStatus.COMPLETED, ended_s=10))
    assert scrape(state, T0 + us(700))["callrec_calls_awaiting_recording_oldest_age_seconds"] \
        == 690
    state.apply_recording(archived(call, at_s=11.5, duration_ms=9000))
    state.apply_call(call_record(call, CallStatus.COMPLETED, ended_s=10))  # a later snapshot
    series = scrape(state, T0 + us(700))
    assert series["callrec_calls_awaiting_recording"] == 0
    assert series["callrec_archive_latency_seconds_count"] == 1
    assert series["callrec_archive_latency_seconds_sum"] == pytest.approx(1.5)
    assert series['callrec_archive_latency_seconds_bucket{le="1.0"}'] == 0
    assert series['callrec_archive_latency_seconds_bucket{le="2.5"}'] == 1
    cluster = call.cluster
    archived_series = (f'callrec_recordings_archived_total{{cluster="{cluster}",'
                       'partial="false",status="COMPLETED"}')
    assert series[archived_series] == 1
    assert series[f'callrec_recorded_audio_seconds_total{{cluster="{cluster}"}}'] == 9


def test_every_family_has_help() -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(ExporterState(), SelfStats(), threading.Lock()))
    text = generate_latest(registry).decode()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    helped = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}
    assert names == helped and len(names) >= 25
    assert all(name.startswith("callrec_") for name in names)


def test_event_time_is_read_from_the_header_of_any_event() -> None:
    chunk = Call(t0=T0).chunk(Leg.NEAR_END, 0)
    encoded = codec.encode(chunk)
    assert event_time_us(encoded) == int(chunk.event_time.timestamp() * 1_000_000)
    with pytest.raises(UndecodableEvent):
        event_time_us(b"\xc3\x01" + bytes(8) + b"\x80")



def test_what_went_quiet_for_a_day_is_forgotten() -> None:
    state = ExporterState(forget_after_s=3600)
    old, fresh = Call(t0=T0), Call(t0=T0 + us(3000))
    state.apply_heartbeat(beat("retired", T0))
    state.apply_heartbeat(beat("rec-1", T0 + us(3000)))
    for call in (old, fresh):
        state.apply_call(call_record(call, CallStatus.ABNORMAL, ended_s=1))
    state.prune(T0 + us(3700))
    assert set(state.recorders) == {"rec-1"}
    assert set(state.awaiting_recording) == {fresh.key}


def test_a_recorders_dropped_rtp_is_a_counter_per_reason_from_zero() -> None:
    state = ExporterState()
    state.apply_heartbeat(beat("rec-1", T0).model_copy(update={"rtp_dropped": {"stranger": 7}}))
    series = scrape(state, T0 + us(1))
    assert series['callrec_recorder_rtp_dropped_total{reason="stranger",recorder="rec-1"}'] == 7
    assert series['callrec_recorder_rtp_dropped_total{reason="ssrc",recorder="rec-1"}'] == 0
    assert series['callrec_recorder_rtp_dropped_total{reason="oversize",recorder="rec-1"}'] == 0
