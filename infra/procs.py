"""Background processes owned by the stack: started detached, tracked and stopped by PID file."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from callrec.infra.errors import PortTaken, StartFailed, ToolMissing

LOG_MAX_BYTES = 50 * 1024 * 1024
LOG_BACKUPS = 5
"""Each managed process's log: at most this much per file and this many old files (logpipe)."""


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(f"{name} is not on PATH: {hint}")
    return path


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def ensure_port_free(host: str, port: int, owner: str) -> None:
    if port_in_use(host, port):
        raise PortTaken(
            f"{host}:{port} is already taken, {owner} cannot listen there: stop what uses it "
            f"(`ss -ltnp 'sport = :{port}'`) or choose another port in the settings"
        )


FREE_PORTS = range(10_000, 30_000)
"""Where ``free_port`` draws: below Linux's ephemeral range (32768-60999 by default), which the
kernel hands to every client socket, and below the tests' RTP ranges (30000 and up)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now for both TCP and UDP, for a process about to listen on it (SIP takes
    both). A port the kernel picks (bind to 0) comes from the ephemeral range, where any client
    socket opened before the listener starts (a Kafka client, a test's UDP probe) may take it
    again; a port drawn at random from ``FREE_PORTS`` is only ever taken by another draw."""
    draw = random.SystemRandom()
    for _ in range(100):
        port = draw.choice(FREE_PORTS)
        if _binds(host, port, socket.SOCK_STREAM) and _binds(host, port, socket.SOCK_DGRAM):
            return port
    raise PortTaken(f"no free port in {FREE_PORTS} on {host} after 100 draws")


def _binds(host: str, port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class ManagedProcess:
    """One detached process with its PID file and log, so `down` works from another shell."""

    def __init__(self, name: str, run_dir: Path, log_max_bytes: int = LOG_MAX_BYTES,
                 log_backups: int = LOG_BACKUPS) -> None:
        self.name = name
        self.pid_file = run_dir / f"{name}.pid"
        self.log_file = run_dir / f"{name}.log"
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups

    def pid(self) -> int | None:
        """PID of the live process, or None (a stale PID file is removed)."""
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self.pid_file.unlink(missing_ok=True)
            return None
        if _is_zombie(pid):
            _reap(pid)
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> int:
        """Start ``argv`` detached; its output goes through ``logpipe`` into ``log_file``,
        rotated by size. The log writer has a session of its own: stopping the process's group
        leaves it to write the last lines and exit when the pipe closes."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        writer = subprocess.Popen(
            [sys.executable, "-m", "callrec.infra.logpipe", str(self.log_file),
             str(self.log_max_bytes), str(self.log_backups)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert writer.stdin is not None
        try:
            proc = subprocess.Popen(
                argv,
                stdout=writer.stdin,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        finally:
            writer.stdin.close()  # the process holds the pipe now; EOF when it is gone
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def wait_healthy(self, healthy: Callable[[], bool], timeout: float) -> None:
        """Poll until healthy; a process that exits or stays unhealthy fails with its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise StartFailed(
                    f"{self.name} exited during start; log {self.log_file}:\n"
                    f"{log_tail(self.log_file)}"
                )
            if healthy():
                return
            time.sleep(0.3)
        self.stop()
        raise StartFailed(
            f"{self.name} not healthy after {timeout:.0f} s; log {self.log_file}:\n"
            f"{log_tail(self.log_file)}"
        )

    def stop(self, timeout: float = 20.0, sig: signal.Signals = signal.SIGTERM) -> bool:
        """Stop the process group; escalate to SIGKILL after the timeout. False if none ran."""
        pid = self.pid()
        if pid is None:
            return False
        _signal_group(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _reap(pid) or not _exists(pid):
                break
            time.sleep(0.1)
        else:
            _signal_group(pid, signal.SIGKILL)
            while _exists(pid) and not _reap(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """kill -9, as a crash would: no chance to flush anything."""
        self.stop(timeout=5, sig=signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return False


def _reap(pid: int) -> bool:
    """Collect our own exited child so it does not linger as a zombie."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid
