"""A real REST replica for the tests: `callrec api serve` as a process on a free port, on the
session's Kafka and S3, and calls seeded as real events with real WAV objects."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from minio import Minio

from callrec.api.tokens import Role, TokenStore
from callrec.avro.events import (
    AbnormalReason,
    CallRecord,
    CallStatus,
    Gap,
    GapCause,
    Leg,
    LegSummary,
    RecordingArchived,
)
from callrec.infra.kafka import KafkaBroker
from callrec.infra.procs import ManagedProcess, free_port
from callrec.infra.s3 import S3Server


def wait_for(condition: Callable[[], object], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or condition}")


def get_json(url: str, token: str | None = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}


@dataclass
class Replica:
    """One `callrec api serve` process with its own data directory."""

    name: str
    port: int
    data_dir: Path
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(self.name, self.data_dir)

    def start(self, ready: bool = True) -> None:
        self.process.start([sys.executable, "-m", "callrec.cli", "api", "serve"], self.env)
        self.process.wait_healthy(lambda: self.health()[0] == 200 if ready
                                  else self.health()[0] != 0, timeout=60)

    def health(self) -> tuple[int, dict[str, object]]:
        return get_json(self.url + "/readyz")

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()


@dataclass
class Site:
    """What every test needs: Kafka, S3, a bucket, a token file and replicas on them."""

    kafka: KafkaBroker
    s3: S3Server
    minio: Minio
    bucket: str
    root: Path

    @property
    def tokens(self) -> TokenStore:
        return TokenStore(self.root / "tokens.json")

    def token(self, role: Role, name: str | None = None) -> str:
        return self.tokens.add(name or f"{role.name}-{uuid.uuid4().hex[:6]}", role)

    def replica(self, name: str) -> Replica:
        env = {
            "CALLREC_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
            "CALLREC_S3_ENDPOINT": self.s3.endpoint,
            "CALLREC_S3_ACCESS_KEY": self.s3.access_key,
            "CALLREC_S3_SECRET_KEY": self.s3.secret_key,
            "CALLREC_S3_BUCKET": self.bucket,
            "CALLREC_API_PORT": str(free_port()),
            "CALLREC_API_REPLICA_ID": name,
            "CALLREC_API_DATA_DIR": str(self.root / name),
            "CALLREC_API_TOKENS_FILE": str(self.root / "tokens.json"),
            "CALLREC_API_SIGNING_KEY_FILE": str(self.root / "playback.key"),
        }
        return Replica(name, int(env["CALLREC_API_PORT"]), self.root / name, env)


def make_wav(seconds: float, rate: int = 8000, seed: int = 0) -> bytes:
    """Stereo 16-bit WAV: a tone on the left (near end), another on the right, some noise."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    left = 9000 * np.sin(2 * np.pi * 440 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    right = 6000 * np.sin(2 * np.pi * 660 * t) * (0.5 + 0.5 * np.cos(2 * np.pi * 0.3 * t))
    pcm = np.stack([left, right], axis=1) + rng.normal(0, 300, (len(t), 2))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype(np.int16).tobytes())
    return out.getvalue()


def call_record(key: str, *, near: str, far: str, started: datetime, status: CallStatus,
                version: int = 3, seconds: float = 4.0, recorder: str = "rec-1",
                abnormal: AbnormalReason | None = None, device: str = "SEP0001") -> CallRecord:
    ended = started + timedelta(seconds=seconds) if status != CallStatus.ACTIVE else None
    legs = [
        LegSummary(leg=leg, leg_id=f"{key}-{leg.value}", segment=0, recorder_id=recorder,
                   recorder_incarnation="i1", codec="PCMU", started_at=started,
                   ended_at=ended, end_reason="BYE" if ended else None, chunk_count=20,
                   packets_received=200, packets_lost=3 if abnormal else 0,
                   payload_bytes=32000)
        for leg in (Leg.NEAR_END, Leg.FAR_END)
    ]
    cluster, _, refci = key.partition(":")
    return CallRecord(
        producer_id="test", call_key=key, version=version, status=status,
        abnormal_reason=abnormal, abnormal_detail="recorder rec-1 lost" if abnormal else None,
        cluster_id=cluster, refci=refci, near_end_addr=near, near_end_device=device,
        far_end_addr=far, far_end_device="GW-1", started_at=started, ended_at=ended, legs=legs,
        event_time=ended or started,
    )


def archive(minio: Minio, bucket: str, call: CallRecord, wav: bytes, *,
            partial: bool = False) -> RecordingArchived:
    """Put the WAV into S3 the way the mixer names it, and the event that announces it."""
    day = call.started_at.astimezone(UTC)
    key = f"recordings/{day:%Y/%m/%d}/{call.call_key.replace(':', '%3A')}.wav"
    result = minio.put_object(bucket, key, io.BytesIO(wav), len(wav), content_type="audio/wav")
    return RecordingArchived(
        producer_id="test", call_key=call.call_key, call_version=call.version,
        call_status=call.status,
        abnormal_reason=call.abnormal_reason.value if call.abnormal_reason else None,
        bucket=bucket, object_key=key, version_id=result.version_id, format="wav", channels=2,
        sample_rate=8000, started_at=call.started_at,
        duration_ms=(len(wav) - 44) * 1000 // (8000 * 4), size_bytes=len(wav),
        sha256=hashlib.sha256(wav).hexdigest(), partial=partial,
        gaps=[Gap(leg=Leg.FAR_END, start_ms=1000, duration_ms=400,
                  cause=GapCause.LOST_PACKETS)] if partial else [],
    )
