"""The recording store against the real S3 server (versitygw): idempotent, locked, retried."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from callrec.infra.s3 import S3Server
from callrec.sinks.errors import StoreUnavailable
from callrec.sinks.store import RecordingStore, connect


def store_for(s3: S3Server, lock: bool = True) -> RecordingStore:
    client = connect(s3.endpoint, s3.access_key, s3.secret_key, secure=False)
    store = RecordingStore(client, f"rec-{uuid.uuid4().hex[:12]}")
    store.ensure_bucket(object_lock=lock)
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


def test_object_lock_where_the_server_supports_it(s3: S3Server) -> None:
    store = store_for(s3)
    print("object lock:", store.object_lock)
    again = RecordingStore(store.client, store.bucket)
    again.ensure_bucket(object_lock=True)
    assert again.object_lock == store.object_lock


def test_a_stopped_server_is_reported_as_retriable() -> None:
    client = connect("127.0.0.1:9", "AKIAXXXXXXXX", "secretsecret", secure=False)
    with pytest.raises(StoreUnavailable) as caught:
        RecordingStore(client, "nobucket").find("key")
    assert caught.value.retriable
