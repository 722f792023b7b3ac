"""The S3 server: versitygw, an S3 gateway that keeps objects as plain files in a directory.

That directory stands for the NAS: recordings are ordinary files an administrator can see and
back up, while every program reaches them only through S3 (the minio SDK). Built once from source
with `go install` into the user cache.
"""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from callrec.infra.errors import StartFailed
from callrec.infra.procs import ManagedProcess, ensure_port_free, require_tool

VERSITYGW_VERSION = "v1.8.0"
VERSITYGW_MODULE = "github.com/versity/versitygw/cmd/versitygw"
HEALTH_PATH = "/health"


def versitygw_path(cache_dir: Path) -> Path:
    return cache_dir / f"versitygw-{VERSITYGW_VERSION}" / "versitygw"


def ensure_versitygw(cache_dir: Path) -> Path:
    """Path of the versitygw binary, built with `go install` on first use."""
    binary = versitygw_path(cache_dir)
    bin_dir = binary.parent
    if binary.exists():
        return binary
    go = require_tool("go", "install Go >= 1.24 (the S3 server is built from source)")
    bin_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [go, "install", f"{VERSITYGW_MODULE}@{VERSITYGW_VERSION}"],
        env={**os.environ, "GOBIN": str(bin_dir), "CGO_ENABLED": "0"},
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0 or not binary.exists():
        raise StartFailed(f"go install versitygw failed:\n{result.stderr[-3000:]}")
    return binary


@dataclass
class S3Server:
    """versitygw on loopback serving ``data_dir`` (the NAS: objects as files) with versions and
    its own state under ``state_dir``: object versions, and its accounts (``iam/``, created
    through its admin API: see s3_accounts.py)."""

    binary: Path
    data_dir: Path
    state_dir: Path
    access_key: str
    secret_key: str
    port: int = 9000
    host: str = "127.0.0.1"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess("s3", self.state_dir)

    def start(self, timeout: float = 30.0) -> None:
        if self.process.pid() is not None:
            return
        ensure_port_free(self.host, self.port, "the S3 server")
        self.data_dir, self.state_dir = self.data_dir.resolve(), self.state_dir.resolve()
        versions, iam = self.state_dir / "versions", self.state_dir / "iam"
        for d in (self.data_dir, self.state_dir, versions, iam):
            d.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self.binary), "--port", self.endpoint, "--health", HEALTH_PATH, "--quiet",
            "--iam-dir", str(iam), "posix", "--versioning-dir", str(versions), str(self.data_dir),
        ]
        # Credentials through the environment, not argv, so `ps` does not show them.
        env = {"ROOT_ACCESS_KEY": self.access_key, "ROOT_SECRET_KEY": self.secret_key}
        self.process.start(argv, env)
        self.process.wait_healthy(self.healthy, timeout)

    def stop(self) -> bool:
        return self.process.stop()

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}{HEALTH_PATH}", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False
