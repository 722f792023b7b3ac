"""A long call (20 minutes here, an 8-hour trader line in production) is mixed window by window
and uploaded in parts: memory does not grow with the rendered audio, every byte is exact."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
import wave
from pathlib import Path

import numpy as np
from minio import Minio

from callrec.infra.s3 import S3Server
from callrec.sinks.store import PART_SIZE, LockPolicy, RecordingStore, connect
from tests.sinks.factory import PACKET_US, rtp_stream, ulaw_to_pcm

MINUTES = 20
REPO = Path(__file__).resolve().parents[2]


def test_a_20_minute_call_is_mixed_in_bounded_memory_and_uploaded_in_parts(
    s3: S3Server, minio_client: Minio, tmp_path: Path
) -> None:
    out = tmp_path / "long.wav"
    child = subprocess.run([sys.executable, "-m", "tests.sinks.long_call", str(MINUTES), str(out)],
                           cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert child.returncode == 0, child.stderr[-3000:]
    figures = json.loads(child.stdout)
    print(figures)
    pcm_bytes = out.stat().st_size - 44
    # The old path held the whole call as int32, then int16, then the encoded file: >5x the
    # PCM. Now mixing never holds it whole, and adds at most a constant to the timeline plan.
    assert figures["mix_growth_kib"] * 1024 < pcm_bytes
    assert figures["mix_growth_kib"] <= figures["plan_growth_kib"] + 16 * 1024

    packets = MINUTES * 60 * 1_000_000 // PACKET_US
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 8000, packets * 160)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    for channel, (seed, ssrc, ts0) in enumerate(((1, 0x1234, 1000), (2, 0x5678, 777))):
        payload = b"".join(p.payload for p in rtp_stream(packets, seed=seed, ssrc=ssrc, ts0=ts0))
        np.testing.assert_array_equal(pcm[:, channel], ulaw_to_pcm(payload))

    store = RecordingStore(connect(s3.endpoint, s3.access_key, s3.secret_key, False),
                           f"rec-{uuid.uuid4().hex[:12]}")
    store.ensure_bucket(LockPolicy())
    key = "recordings/2026/12/01/Long%3A1.wav"
    with out.open("rb") as f:
        stored = store.put(key, f, "audio/wav", {"sha256": figures["sha256"]}, None)
    assert stored.size == out.stat().st_size > 2 * PART_SIZE
    etag = minio_client.stat_object(store.bucket, key).etag or ""
    assert etag.endswith(f"-{-(-stored.size // PART_SIZE)}")  # sent as a multipart upload
    digest = hashlib.sha256()
    response = minio_client.get_object(store.bucket, key)
    try:
        for block in response.stream(1 << 20):
            digest.update(block)
    finally:
        response.close()
        response.release_conn()
    assert digest.hexdigest() == figures["sha256"]
