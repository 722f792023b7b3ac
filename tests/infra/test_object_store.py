"""The S3 server through the minio SDK: put, get, stat, list, versions, object lock."""

from __future__ import annotations

import hashlib
import io
import uuid

from minio import Minio
from minio.commonconfig import ENABLED

from callrec.infra.s3 import S3Server


def test_put_get_stat_list(minio_client: Minio, s3: S3Server) -> None:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    minio_client.make_bucket(bucket)
    body = b"RIFF" + bytes(range(256)) * 40
    minio_client.put_object(
        bucket, "recordings/2026/11/24/ClusterA_1.wav", io.BytesIO(body), len(body),
        content_type="audio/wav", metadata={"x-amz-meta-sha256": hashlib.sha256(body).hexdigest()},
    )
    got = minio_client.get_object(bucket, "recordings/2026/11/24/ClusterA_1.wav")
    try:
        assert got.read() == body
    finally:
        got.close()
        got.release_conn()
    stat = minio_client.stat_object(bucket, "recordings/2026/11/24/ClusterA_1.wav")
    assert stat.size == len(body)
    assert stat.content_type == "audio/wav"
    assert stat.metadata["x-amz-meta-sha256"] == hashlib.sha256(body).hexdigest()
    names = [o.object_name for o in minio_client.list_objects(bucket, "recordings/", True)]
    assert names == ["recordings/2026/11/24/ClusterA_1.wav"]
    # the NAS directory holds the object as a plain file
    assert (s3.data_dir / bucket / "recordings/2026/11/24/ClusterA_1.wav").read_bytes() == body


def test_object_lock_bucket_keeps_versions(minio_client: Minio) -> None:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    minio_client.make_bucket(bucket, object_lock=True)
    assert minio_client.get_bucket_versioning(bucket).status == ENABLED
    first = minio_client.put_object(bucket, "k", io.BytesIO(b"one"), 3)
    second = minio_client.put_object(bucket, "k", io.BytesIO(b"two"), 3)
    assert first.version_id and second.version_id and first.version_id != second.version_id
    versions = list(minio_client.list_objects(bucket, "k", include_version=True))
    assert len(versions) == 2
