"""The ten-line consumer of avro/README.md decodes our events with nothing but the .avsc files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

from callrec.avro.events import LegEnded, LegEndReason
from callrec.eventlog import EventPublisher
from callrec.infra.kafka import KafkaBroker

README = Path(__file__).resolve().parents[2] / "avro" / "README.md"


def run_until_printed(script: Path, needle: str, bootstrap: str) -> bytes:
    """Run the README consumer until it prints ``needle`` (it never exits by itself)."""
    env = {**os.environ, "KAFKA": bootstrap, "SCHEMAS": str(README.parent / "schemas")}
    proc = subprocess.Popen([sys.executable, str(script)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while needle.encode() not in seen and time.monotonic() < deadline:
            seen += proc.stdout.read() or b""
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    return seen


async def test_readme_consumer_prints_our_event(kafka: KafkaBroker, tmp_path: Path) -> None:
    [snippet] = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    script = tmp_path / "consumer.py"
    script.write_text(snippet)
    call_key = f"ClusterA:{uuid.uuid4().hex[:10]}"
    publisher = EventPublisher(kafka.bootstrap, "test-readme")
    await publisher.start()
    await publisher.publish(LegEnded(
        producer_id="rec-a", call_key=call_key, leg="NEAR_END", leg_id="l1",
        reason=LegEndReason.BYE, packets_received=5, packets_lost=0, payload_bytes=800,
        chunk_count=1,
    ))
    await publisher.stop()
    seen = run_until_printed(script, call_key, kafka.bootstrap)
    [line] = [line for line in seen.decode().splitlines() if call_key in line]
    assert line.startswith(f"callrec.v1.LegEnded {call_key} ")
    assert "'reason': 'BYE'" in line
