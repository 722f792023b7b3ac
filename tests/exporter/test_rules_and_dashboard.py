"""The alert rules pass promtool (one unit-test file per alert), and the committed dashboard is
exactly what the generator writes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from callrec.exporter.dashboard import dashboard_json
from callrec.infra.monitoring import PROMETHEUS_DIR, RULE_FILES

ROOT = Path(__file__).parents[2]
TESTS = PROMETHEUS_DIR / "tests"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool missing: ./run installs the Debian package prometheus"
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False,
                          cwd=PROMETHEUS_DIR)


def alert_names() -> set[str]:
    return {name for path in RULE_FILES
            for name in re.findall(r"^\s*- alert: (\w+)$", path.read_text(), re.MULTILINE)}


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


def test_every_alert_has_its_own_promtool_test_and_they_pass() -> None:
    files = sorted(TESTS.glob("*.test.yml"))
    assert {path.name.removesuffix(".test.yml") for path in files} == alert_names()
    for path in files:
        text = path.read_text()
        name = path.name.removesuffix(".test.yml")
        # each file checks its own alert both ways: firing, and silent
        assert f"alertname: {name}" in text and "exp_alerts: []" in text, path.name
        assert re.search(r"exp_alerts:\n\s+- exp_labels", text), path.name
    result = promtool("test", "rules", *(str(path.relative_to(PROMETHEUS_DIR)) for path in files))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files)


def test_the_committed_dashboard_is_the_generators_output() -> None:
    committed = (ROOT / "infra/grafana/dashboards/callrec.json").read_text()
    assert committed == dashboard_json(), "run `./run metrics dashboard`; never edit the JSON"
