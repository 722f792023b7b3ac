"""A long call (20 minutes here, an 8-hour trader line in production) is mixed from the disk spool
window by window and uploaded in parts: memory grows by a few hundred bytes per chunk at most,
never with the call's objects or audio, and every byte is exact."""

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
from tests.sinks.factory import PACKET_US, ulaw_to_pcm
from tests.sinks.long_call import leg_payload

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
    # The archiver's path (mix_spooled) holds neither the call's Avro objects nor its samples,
    # only a summary of each chunk while it plans, then a few numbers per run: less than the
    # call's PCM (the path before it held the AudioChunk objects, ~6x the PCM).
    assert figures["mix_growth_kib"] * 1024 < pcm_bytes

    packets = MINUTES * 60 * 1_000_000 // PACKET_US
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 8000, packets * 160)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    for channel in (0, 1):
        np.testing.assert_array_equal(pcm[:, channel], ulaw_to_pcm(leg_payload(MINUTES, channel)))

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
