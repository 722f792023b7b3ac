"""GET /verify against a real signed daily manifest (the mixer's own writer), then a tampered
object: the answer names the check that failed, and the auditor's access says so too."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx

from callrec.api.tokens import Role
from callrec.avro.events import CallStatus
from callrec.sinks.manifests import ManifestWriter, generate_key
from callrec.sinks.store import RecordingStore
from tests.api.conftest import Seeded
from tests.api.harness import Replica, Site, archive, call_record, make_wav, wait_for
from tests.conftest import run_sync
from tests.sinks.harness import publish


def test_manifest_checks_pass_then_tampering_is_named(
    replica: Replica, site: Site, seeded: Seeded, tokens: dict[Role, str], tmp_path: Path
) -> None:
    key = f"{seeded.cluster}verify:{time.time_ns()}"
    call = call_record(key, near="8001", far="8002", started=datetime.now(UTC),
                       status=CallStatus.COMPLETED)
    bucket = f"verify-{time.time_ns()}"  # its own day's manifest, apart from the other tests
    site.minio.make_bucket(bucket)
    rec = archive(site.minio, bucket, call, make_wav(1.0, seed=8))
    run_sync(publish(site.kafka.bootstrap, [call, rec]))
    headers = {"Authorization": f"Bearer {tokens[Role.auditor]}"}
    url = f"{replica.url}/api/v1/calls/{quote(key, safe='')}/verify"
    detail = f"{replica.url}/api/v1/calls/{quote(key, safe='')}"
    wait_for(lambda: (httpx.get(detail, headers=headers).json().get("recording")
                      is not None), 30, "the recording")
    generate_key(tmp_path / "key.pem")  # `callrec mixer keygen`: the writer never makes one
    ManifestWriter(RecordingStore(site.minio, bucket), tmp_path / "key.pem").write_day(
        call.started_at.astimezone(UTC).date())

    good = httpx.get(url, headers=headers).json()
    assert good["ok"] is True
    assert [(c["name"], c["ok"]) for c in good["checks"]] == [
        ("object_sha256", True), ("manifest_signature", True), ("manifest_entry", True)]

    forged = make_wav(1.0, seed=9)  # same size, other audio
    site.minio.put_object(bucket, rec.object_key, io.BytesIO(forged), len(forged))
    bad = httpx.get(url, headers=headers).json()
    assert bad["ok"] is False
    assert [(c["name"], c["ok"]) for c in bad["checks"]] == [
        ("object_sha256", False), ("manifest_signature", True), ("manifest_entry", True)]
    assert rec.sha256 in bad["checks"][0]["detail"]
    assert bad["sha256_stored"] != rec.sha256

    def audited() -> bool:
        log = httpx.get(f"{replica.url}/api/v1/audit", params={"call_key": key},
                        headers=headers).json()["data"]
        return [e["outcome"] for e in log] == ["failed: object_sha256", "ok"]

    wait_for(audited, 15, "both verifies in the audit log")
