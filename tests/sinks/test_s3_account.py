"""The mixer's own S3 account against the real versitygw: it archives, and can do nothing else."""

from __future__ import annotations

import hashlib
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from minio import Minio
from minio.commonconfig import COMPLIANCE, GOVERNANCE
from minio.error import S3Error
from minio.objectlockconfig import DAYS, ObjectLockConfig

from callrec.infra.s3 import S3Server
from callrec.infra.s3_accounts import S3Account, provision
from callrec.sinks.store import LockPolicy, RecordingStore, connect


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
