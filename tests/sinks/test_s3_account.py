"""The mixer's own S3 account against the real versitygw: it archives, and can do nothing else;
the worker refuses to start on an unlocked bucket or without its signing key."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from minio import Minio
from minio.commonconfig import COMPLIANCE, GOVERNANCE
from minio.error import S3Error
from minio.objectlockconfig import DAYS, ObjectLockConfig

from callrec.infra.kafka import KafkaBroker
from callrec.infra.s3 import S3Server
from callrec.infra.s3_accounts import S3Account, provision
from callrec.sinks.store import LockPolicy, RecordingStore, connect
from tests.sinks.harness import mixer_env, new_cluster


def test_the_mixer_account_archives_but_cannot_delete_unlock_or_administer(
    s3: S3Server, minio_client: Minio
) -> None:
    bucket = f"rec-{uuid.uuid4().hex[:12]}"
    mixer = S3Account(f"mixer-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
    root = S3Account(s3.access_key, s3.secret_key)
    provision(s3.endpoint, root, bucket, mixer, COMPLIANCE, 7)
    provision(s3.endpoint, root, bucket, mixer, COMPLIANCE, 7)  # idempotent

    store = RecordingStore(connect(s3.endpoint, mixer.access_key, mixer.secret_key, False),
                           bucket)
    store.ensure_bucket(LockPolicy(required=True))
    assert store.object_lock
    data = b"RIFF" + uuid.uuid4().bytes
    key = "recordings/2026/12/01/C%3A1.wav"
    until = datetime.now(UTC) + timedelta(days=1)  # as the mixer does: retention of its own
    stored = store.put(key, data, "audio/wav",
                       {"sha256": hashlib.sha256(data).hexdigest(), "call-version": "1"}, until)
    assert store.read(key, stored.version_id) == data
    assert list(store.keys("recordings/")) == [key]
    retention = minio_client.get_object_retention(bucket, key, stored.version_id)
    assert retention is not None and retention.mode == COMPLIANCE

    client = store.client
    denied = [
        lambda: client.remove_object(bucket, key, version_id=stored.version_id),
        lambda: client.remove_object(bucket, key),
        lambda: client.delete_bucket_policy(bucket),
        lambda: client.set_object_lock_config(bucket, ObjectLockConfig(GOVERNANCE, 1, DAYS)),
        lambda: client.make_bucket(f"own-{uuid.uuid4().hex[:8]}"),
        lambda: client.remove_bucket(bucket),
    ]
    for attempt in denied:
        with pytest.raises(S3Error) as caught:
            attempt()
        assert caught.value.code == "AccessDenied", caught.value
    other = f"rec-{uuid.uuid4().hex[:12]}"
    minio_client.make_bucket(other)
    with pytest.raises(S3Error):  # nothing outside its bucket
        client.put_object(other, "x", io.BytesIO(b"x"), 1)
    assert minio_client.get_object(bucket, key).read() == data  # all still there


def test_the_reader_account_reads_and_lists_but_cannot_write_or_delete(
    s3: S3Server, minio_client: Minio
) -> None:
    bucket = f"rec-{uuid.uuid4().hex[:12]}"
    mixer = S3Account(f"mixer-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
    reader = S3Account(f"reader-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
    provision(s3.endpoint, S3Account(s3.access_key, s3.secret_key), bucket, mixer, GOVERNANCE,
              1, reader)
    archiving = RecordingStore(connect(s3.endpoint, mixer.access_key, mixer.secret_key, False),
                               bucket)
    archiving.ensure_bucket(LockPolicy(required=True))  # the mixer still archives beside it
    key = "recordings/2026/12/02/C%3A2.wav"
    stored = archiving.put(key, b"RIFF-read-only", "audio/wav", {"sha256": "0" * 64,
                                                                 "call-version": "1"}, None)

    reading = RecordingStore(connect(s3.endpoint, reader.access_key, reader.secret_key, False),
                             bucket)
    assert reading.read(key, stored.version_id) == b"RIFF-read-only"
    found = reading.find(key)
    assert found is not None and found.version_id == stored.version_id
    assert list(reading.keys("recordings/")) == [key]
    client = reading.client
    denied = [
        lambda: client.put_object(bucket, key, io.BytesIO(b"forged"), 6),
        lambda: client.put_object(bucket, "recordings/new.wav", io.BytesIO(b"x"), 1),
        lambda: client.remove_object(bucket, key, version_id=stored.version_id),
        lambda: client.delete_bucket_policy(bucket),
        lambda: client.set_object_lock_config(bucket, ObjectLockConfig(GOVERNANCE, 1, DAYS)),
    ]
    for attempt in denied:
        with pytest.raises(S3Error) as caught:
            attempt()
        assert caught.value.code == "AccessDenied", caught.value
    assert minio_client.get_object(bucket, key).read() == b"RIFF-read-only"  # unchanged


def run_mixer(env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "callrec.sinks"], env={**os.environ, **env},
                          cwd=tmp, capture_output=True, text=True, timeout=60, check=False)


def test_the_worker_refuses_to_start_without_lock_or_signing_key(
    kafka: KafkaBroker, s3: S3Server, minio_client: Minio, tmp_path: Path
) -> None:
    env = mixer_env(kafka, s3, tmp_path, new_cluster())
    minio_client.make_bucket(env["CALLREC_S3_BUCKET"])  # someone made it without object lock
    refused = run_mixer(env, tmp_path)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "has no object lock" in refused.stderr and "REQUIRE_OBJECT_LOCK" in refused.stderr

    Path(env["CALLREC_MIXER_MANIFEST_KEY"]).unlink()
    unkeyed = run_mixer({**env, "CALLREC_S3_BUCKET": f"rec-{uuid.uuid4().hex[:12]}"}, tmp_path)
    assert unkeyed.returncode == 2 and "callrec mixer keygen" in unkeyed.stderr
    assert not Path(env["CALLREC_MIXER_MANIFEST_KEY"]).exists()  # not made behind our back
