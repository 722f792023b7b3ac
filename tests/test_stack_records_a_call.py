"""The README's first command, end to end: `callrec up --demo` on free ports starts Kafka, the S3
server, the call-state worker, the mixer, a recorder, the metrics exporter, Prometheus and the REST
server, and records three calls through the CUCM emulator (one held 10 s), which Prometheus then
counts; sipp plays CUCM's two legs of one more call; the recording that lands in S3 holds the
pcap's audio on both channels, sample-exact; the stack's REST server finds and serves that call,
and its page plays it in chromium; `down` stops all.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from minio import Minio
from playwright.sync_api import sync_playwright

from callrec.avro.events import CallStatus
from callrec.emulator.audio import G711A_PCAP, pcap_rtp_payloads
from callrec.infra.procs import free_port
from tests.api.browser import ARTIFACTS, CHROMIUM, sign_in, wait_js
from tests.conftest import cache_dir
from tests.exporter.harness import wait_until
from tests.producers.harness import leg_keys, run_sipp
from tests.sinks.factory import alaw_to_pcm
from tests.sinks.harness import archived, wav_channels

pytestmark = pytest.mark.slow
SERVICES = ["kafka", "s3", "streams", "mixer", "recorder", "api", "exporter", "prometheus"]


@dataclass
class Stack:
    env: dict[str, str]
    root: Path

    def callrec(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "callrec.cli", *args], env=self.env,
                              cwd=self.root, capture_output=True, text=True, timeout=300,
                              check=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.env['CALLREC_KAFKA_PORT']}"

    @property
    def sip_port(self) -> int:  # what run_sipp dials
        return int(self.env["CALLREC_RECORDER_SIP_PORT"])

    @property
    def data_dir(self) -> Path:  # where run_sipp leaves its error logs
        return self.root / "var" / "sipp"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    rtp = free_port() % 20_000 + 30_000
    env = {
        **os.environ,
        "CALLREC_VAR_DIR": str(tmp_path / "var"),
        "CALLREC_CACHE_DIR": str(cache_dir()),
        "CALLREC_KAFKA_PORT": str(free_port()),
        "CALLREC_KAFKA_CONTROLLER_PORT": str(free_port()),
        "CALLREC_S3_PORT": str(free_port()),
        "CALLREC_RECORDER_SIP_PORT": str(free_port()),
        "CALLREC_API_PORT": str(free_port()),
        "CALLREC_RECORDER_RTP_PORTS": f"{rtp}-{rtp + 99}",
        "CALLREC_STREAMS_SEGMENT_WINDOW_S": "2",
        "CALLREC_STREAMS_METRICS_WINDOW_S": "2",
        "CALLREC_EXPORTER_PORT": str(free_port()),
        "CALLREC_PROMETHEUS_PORT": str(free_port()),
        "CALLREC_PROMETHEUS_SCRAPE_INTERVAL_S": "1",
    }
    env.pop("CALLREC_KAFKA_BOOTSTRAP", None)
    (tmp_path / "var" / "sipp").mkdir(parents=True)
    stack = Stack(env, tmp_path)
    try:
        yield stack
    finally:
        stopped = stack.callrec("down")
        assert stopped.returncode == 0, stopped.stderr
        after = stack.callrec("status")
        assert after.returncode == 1
        assert all("STOPPED" in line for line in after.stdout.splitlines()), after.stdout


async def test_up_records_a_cucm_call_into_s3(stack: Stack) -> None:
    started = stack.callrec("up", "--demo")
    assert started.returncode == 0, started.stdout + started.stderr
    demo = [line.split() for line in started.stdout.splitlines() if "  s3://" in line]
    assert [line[1] for line in demo] == ["COMPLETED"] * 3, started.stdout
    assert sorted(line[2] for line in demo) == ["segments=1", "segments=1", "segments=2"]
    nas_files = [Path(line[-1]) for line in demo]
    assert all(file.is_file() for file in nas_files)  # where the demo says each recording is
    prometheus = f"http://127.0.0.1:{stack.env['CALLREC_PROMETHEUS_PORT']}"
    assert f"Prometheus: {prometheus}" in started.stdout
    # A call-state metric window, the exporter's read and a scrape lie between a call's end and
    # Prometheus: usually under 20 s, past 40 s on a machine at load 12.
    await wait_until(lambda: completed_calls(prometheus) == 3, 90,
                     "Prometheus counts the demo's 3 completed calls")
    status = stack.callrec("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert [line.split()[:2] for line in status.stdout.splitlines()] == [
        [name, "healthy"] for name in SERVICES
    ]
    again = stack.callrec("up")  # idempotent: nothing new starts
    assert again.returncode == 0, again.stdout + again.stderr
    assert [line.split()[:4] for line in stack.callrec("status").stdout.splitlines()] == [
        line.split()[:4] for line in status.stdout.splitlines()
    ]

    cluster, refci = f"S{uuid.uuid4().hex[:6]}", str(uuid.uuid4().int % 10**8 + 10**8)
    near, far = await run_both(stack, refci, cluster)
    assert near[0] == 0 and far[0] == 0, (near, far)

    [event] = await archived(stack.bootstrap, {f"{cluster}:{refci}"}, within=90)
    assert event.call_status == CallStatus.COMPLETED and not event.partial, event
    credentials = json.loads((stack.root / "var" / "s3-credentials.json").read_text())
    s3 = Minio(f"127.0.0.1:{stack.env['CALLREC_S3_PORT']}", credentials["access_key"],
               credentials["secret_key"], secure=False)
    body = s3.get_object(event.bucket, event.object_key).read()
    rate, pcm = wav_channels(body)
    expected = alaw_to_pcm(b"".join(pcap_rtp_payloads(G711A_PCAP)))
    assert rate == 8000
    for channel in (0, 1):
        np.testing.assert_array_equal(np.trim_zeros(pcm[:, channel]), expected)
    # the object is a plain file on the NAS directory
    nas_file = stack.root / "var" / "nas" / event.bucket / event.object_key
    assert nas_file.read_bytes() == body
    # ... and the stack's REST server finds the sipp call and plays it, with the demo's token
    [token] = [line.strip() for line in started.stdout.splitlines()
               if line.strip().startswith("crk_")]
    api = f"http://127.0.0.1:{stack.env['CALLREC_API_PORT']}/api/v1"
    headers = {"Authorization": f"Bearer {token}"}
    found = await asyncio.to_thread(httpx.get, f"{api}/calls", params={"cluster": cluster},
                                    headers=headers)
    assert [c["call_key"] for c in found.json()["data"]] == [event.call_key], found.text
    played = await asyncio.to_thread(
        httpx.get, f"{api}/calls/{quote(event.call_key, safe='')}/recording", headers=headers)
    assert played.status_code == 200 and played.content == body
    await asyncio.to_thread(listen_in_the_browser, stack, token, cluster, event.call_key)


def listen_in_the_browser(stack: Stack, token: str, cluster: str, call_key: str) -> None:
    """The page in Debian's chromium finds the sipp call and plays it to its end."""
    url = f"http://127.0.0.1:{stack.env['CALLREC_API_PORT']}/"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            sign_in(page, url, token, "viewer")
            page.click("#search summary")
            page.fill("#f-cluster", cluster)
            page.click("#search button[type=submit]")
            page.click(f"tr[data-key='{call_key}']")
            wait_js(page, "document.getElementById('audio').readyState >= 1")
            for _ in range(3):
                page.click("#speed")  # 4x: the call is 8 s long
            page.click("#play")
            wait_js(page, "document.getElementById('audio').ended", timeout=30)
            page.screenshot(path=ARTIFACTS / "sipp-call-played.png")
        finally:
            browser.close()


def completed_calls(prometheus: str) -> float | None:
    query = urllib.parse.urlencode({"query": "sum(callrec_calls_completed_total)"})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query?{query}", timeout=5) as response:
        result = json.loads(response.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


async def run_both(stack: Stack, refci: str, cluster: str) -> tuple[tuple[int, str], ...]:
    return tuple(await asyncio.gather(
        run_sipp("pcap_leg.xml", stack, leg_keys("x-nearend", refci, cluster), 7600),  # type: ignore[arg-type]
        run_sipp("pcap_leg.xml", stack, leg_keys("x-farend", refci, cluster), 7600),  # type: ignore[arg-type]
    ))
