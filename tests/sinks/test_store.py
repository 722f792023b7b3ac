"""The recording store against the real S3 server (versitygw): idempotent, locked, retried."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from minio import Minio
from minio.commonconfig import COMPLIANCE
from minio.error import S3Error
from minio.objectlockconfig import DAYS

from callrec.infra.s3 import S3Server
from callrec.sinks.errors import ObjectLockMissing, StoreUnavailable
from callrec.sinks.store import LockPolicy, RecordingStore, connect


def store_for(s3: S3Server, lock: LockPolicy | None = None) -> RecordingStore:
    client = connect(s3.endpoint, s3.access_key, s3.secret_key, secure=False)
    store = RecordingStore(client, f"rec-{uuid.uuid4().hex[:12]}")
    store.ensure_bucket(lock or LockPolicy())
    return store


def test_put_is_idempotent_and_keeps_metadata(s3: S3Server) -> None:
    store = store_for(s3)
    data = b"RIFF" + uuid.uuid4().bytes
    sha = hashlib.sha256(data).hexdigest()
    until = datetime.now(UTC) + timedelta(days=1)
    key = "recordings/2026/11/24/TestCluster%3A1.wav"
    first = store.put(key, data, "audio/wav", {"sha256": sha, "call-key": "TestCluster:1"}, until)
    second = store.put(key, b"other bytes", "audio/wav", {"sha256": "x"}, until)
    assert second.sha256 == first.sha256 == sha
    assert store.read(key) == data
    assert list(store.keys("recordings/2026/11/24/")) == [key]
    found = store.find(key)
    assert found is not None and found.metadata["call-key"] == "TestCluster:1"
    assert store.find("recordings/none.wav") is None


def test_a_new_bucket_gets_compliance_lock_with_its_default_retention(
    s3: S3Server, minio_client: Minio
) -> None:
    store = store_for(s3, LockPolicy(mode=COMPLIANCE, default_days=30))
    assert store.object_lock
    config = minio_client.get_object_lock_config(store.bucket)
    assert (config.mode, config.duration, config.duration_unit) == (COMPLIANCE, 30, DAYS)
    key = "recordings/2026/11/24/TestCluster%3A2.wav"
    until = datetime.now(UTC) + timedelta(days=2)
    retained = store.put(key, b"RIFF-1", "audio/wav", {"sha256": "a", "call-version": "1"}, until)
    retention = minio_client.get_object_retention(store.bucket, key, retained.version_id)
    assert retention is not None and retention.mode == COMPLIANCE
    # no retention of its own: versitygw applies the bucket's default as a window from the
    # lock configuration's creation (not from the object's), see infra/s3_accounts.py
    plain = store.put(key, b"RIFF-2", "audio/wav", {"sha256": "b", "call-version": "2"}, None)
    for version in (retained.version_id, plain.version_id):
        with pytest.raises(S3Error) as caught:  # not even root deletes a COMPLIANCE version
            minio_client.remove_object(store.bucket, key, version_id=version)
        assert caught.value.code in ("AccessDenied", "ObjectLocked"), caught.value
    again = RecordingStore(store.client, store.bucket)
    again.ensure_bucket(LockPolicy())
    assert again.object_lock


def test_a_bucket_without_lock_is_refused_when_lock_is_required(
    s3: S3Server, minio_client: Minio
) -> None:
    bucket = f"plain-{uuid.uuid4().hex[:12]}"
    minio_client.make_bucket(bucket)  # made by someone else, without object lock
    store = RecordingStore(connect(s3.endpoint, s3.access_key, s3.secret_key, False), bucket)
    with pytest.raises(ObjectLockMissing, match="no object lock") as caught:
        store.ensure_bucket(LockPolicy(required=True))
    assert not caught.value.retriable
    store.ensure_bucket(LockPolicy(required=False))  # allowed only when asked for
    assert not store.object_lock


def test_a_stopped_server_is_reported_as_retriable() -> None:
    client = connect("127.0.0.1:9", "AKIAXXXXXXXX", "secretsecret", secure=False)
    with pytest.raises(StoreUnavailable) as caught:
        RecordingStore(client, "nobucket").find("key")
    assert caught.value.retriable
