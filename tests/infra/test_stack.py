"""The README's first command: `callrec up`, `status`, `down` on free ports in a scratch dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from callrec.infra.procs import free_port
from tests.conftest import cache_dir


def callrec(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "callrec.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


def test_up_status_down(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CALLREC_VAR_DIR": str(tmp_path / "var"),
        "CALLREC_CACHE_DIR": str(cache_dir()),
        "CALLREC_KAFKA_PORT": str(free_port()),
        "CALLREC_KAFKA_CONTROLLER_PORT": str(free_port()),
        "CALLREC_S3_PORT": str(free_port()),
    }
    try:
        started = callrec("up", env=env, cwd=tmp_path)
        assert started.returncode == 0, started.stdout + started.stderr
        status = callrec("status", env=env, cwd=tmp_path)
        assert status.returncode == 0, status.stdout + status.stderr
        lines = {line.split()[0]: line for line in status.stdout.splitlines()}
        assert "healthy" in lines["kafka"] and "healthy" in lines["s3"]
        assert (tmp_path / "var" / "nas").is_dir()
        again = callrec("up", env=env, cwd=tmp_path)  # idempotent: nothing new starts
        assert again.returncode == 0, again.stdout + again.stderr
        assert callrec("status", env=env, cwd=tmp_path).stdout == status.stdout
    finally:
        stopped = callrec("down", env=env, cwd=tmp_path)
    assert stopped.returncode == 0
    after = callrec("status", env=env, cwd=tmp_path)
    assert after.returncode == 1
    assert all("STOPPED" in line for line in after.stdout.splitlines())
