"""Starting the real components: idempotent topics, clear errors instead of hangs."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from callrec.avro.topics import ALL_TOPICS
from callrec.infra.errors import PortTaken, ToolMissing
from callrec.infra.kafka import KafkaBroker, ensure_kafka_jars
from callrec.infra.procs import free_port
from callrec.infra.topics import ensure_topics, topic_configs
from tests.conftest import TEST_PARTITIONS, cache_dir


async def test_topic_bootstrap_twice_changes_nothing(kafka: KafkaBroker) -> None:
    # the session fixture already bootstrapped once
    assert await ensure_topics(kafka.bootstrap, TEST_PARTITIONS) == []
    calls = await topic_configs(kafka.bootstrap, "rec.calls.v1")
    audio = await topic_configs(kafka.bootstrap, "rec.audio.v1")
    assert calls["cleanup.policy"] == "compact"
    assert audio["cleanup.policy"] == "delete"
    assert audio["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert len(ALL_TOPICS) == 8


def test_a_taken_port_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        broker = KafkaBroker(ensure_kafka_jars(cache_dir()), tmp_path,
                             port=squatter.getsockname()[1], controller_port=free_port())
        with pytest.raises(PortTaken, match="already taken"):
            broker.start()
    assert broker.process.pid() is None


def test_missing_java_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    broker = KafkaBroker(ensure_kafka_jars(cache_dir()), tmp_path,
                         port=free_port(), controller_port=free_port())
    with pytest.raises(ToolMissing, match="java"):
        broker.start()


def test_broker_stops_by_pid_and_restarts_with_its_data(kafka: KafkaBroker) -> None:
    pid = kafka.process.pid()
    assert pid is not None
    kafka.stop()
    assert kafka.process.pid() is None
    assert not kafka.healthy()
    started = time.monotonic()
    kafka.start()
    assert kafka.healthy()
    assert kafka.process.pid() != pid
    assert time.monotonic() - started < 90
