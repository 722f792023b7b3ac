"""`callrec streams health`: the stack's probe reads the worker's health file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from callrec.health import write_health
from callrec.streams.cli import app


@pytest.mark.parametrize(("age_s", "exit_code"), [(0.0, 0), (60.0, 1)])
def test_health_is_the_freshness_of_the_health_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, age_s: float, exit_code: int
) -> None:
    monkeypatch.setenv("CALLREC_STREAMS_DATA_DIR", str(tmp_path))
    write_health(tmp_path / "health.json", "streams", "running", at=time.time() - age_s,
                 worker_id="w")
    result = CliRunner().invoke(app, ["health", "--max-age-s", "5"])
    assert result.exit_code == exit_code, result.output


def test_no_health_file_is_unhealthy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLREC_STREAMS_DATA_DIR", str(tmp_path))
    assert CliRunner().invoke(app, ["health"]).exit_code == 1
