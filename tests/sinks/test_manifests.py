"""Signed daily manifests: checked with the real openssl binary and a pinned key; `verify` holds
the store and the manifest against every RecordingArchived and catches tampering."""

from __future__ import annotations

import asyncio
import hashlib
import io
import subprocess
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from minio.commonconfig import COMPLIANCE
from minio.error import S3Error
from typer.testing import CliRunner

from callrec.avro.events import CallStatus, RecordingArchived
from callrec.infra.kafka import KafkaBroker
from callrec.infra.s3 import S3Server
from callrec.sinks.cli import app
from callrec.sinks.errors import ManifestInvalid, ManifestKeyError
from callrec.sinks.main import store_from
from callrec.sinks.manifests import (
    ManifestEntry,
    ManifestWriter,
    generate_key,
    load_key,
    load_public_key,
    manifest_key,
    parse_manifest,
    public_key_path,
    render_manifest,
    verify_day,
)
from callrec.sinks.store import LockPolicy, RecordingStore, connect
from tests.conftest import run_sync
from tests.sinks.factory import T0_US, simple_call
from tests.sinks.harness import archived, mixer_env, new_cluster, publish, running, settings_from

DAY = date(2026, 9, 21)


def test_manifest_lines_are_sha256sum_format_sorted_by_key() -> None:
    entries = [
        ManifestEntry("recordings/b.wav", "b" * 64),
        ManifestEntry("recordings/a.wav", "a" * 64),
    ]
    text = render_manifest(entries)
    assert text == f"{'a' * 64}  recordings/a.wav\n{'b' * 64}  recordings/b.wav\n".encode()
    assert parse_manifest(text) == sorted(entries, key=lambda e: e.key)
    with pytest.raises(ManifestInvalid):
        parse_manifest(b"not a manifest line\n")


def filled_store(s3: S3Server, count: int) -> tuple[RecordingStore, list[RecordingArchived]]:
    """A locked bucket with ``count`` recordings of DAY, and the events announcing them."""
    store = RecordingStore(connect(s3.endpoint, s3.access_key, s3.secret_key, False),
                           f"rec-{uuid.uuid4().hex[:12]}")
    store.ensure_bucket(LockPolicy())
    events = [store_recording(store, f"C:{n}", uuid.uuid4().bytes * 10) for n in range(count)]
    return store, events


def store_recording(store: RecordingStore, call_key: str, data: bytes,
                    call_version: int = 1) -> RecordingArchived:
    key = f"recordings/2026/09/21/{call_key.replace(':', '%3A')}.wav"
    sha = hashlib.sha256(data).hexdigest()
    stored = store.put(key, data, "audio/wav", {"sha256": sha, "call-version": str(call_version)},
                       None)
    return RecordingArchived(
        producer_id="test", call_key=call_key, call_version=call_version,
        call_status=CallStatus.COMPLETED, bucket=store.bucket, object_key=key,
        version_id=stored.version_id, format="wav", channels=2, sample_rate=8000,
        started_at=datetime(2026, 9, 21, 10, tzinfo=UTC), duration_ms=1, size_bytes=len(data),
        sha256=sha, partial=False)


def keyed(tmp_path: Path) -> Path:
    key_file = tmp_path / "keys" / "manifest.pem"
    generate_key(key_file)
    return key_file


def test_openssl_verifies_the_signature_and_verify_catches_a_changed_object(
    s3: S3Server, tmp_path: Path
) -> None:
    store, events = filled_store(s3, 3)
    key_file = keyed(tmp_path)
    name, count = ManifestWriter(store, key_file).write_day(DAY)
    assert (name, count) == (manifest_key(DAY), 3)
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    (tmp_path / "day.sha256").write_bytes(store.read(name))
    (tmp_path / "day.sha256.sig").write_bytes(store.read(name + ".sig"))
    openssl = [
        "openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(public_key_path(key_file)),
        "-rawin", "-in", str(tmp_path / "day.sha256"), "-sigfile", str(tmp_path / "day.sha256.sig"),
    ]
    result = subprocess.run(openssl, capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "Signature Verified Successfully" in result.stdout
    (tmp_path / "day.sha256").write_bytes(store.read(name) + b"\n")
    assert subprocess.run(openssl, capture_output=True, check=False).returncode != 0

    public = load_public_key(public_key_path(key_file))
    assert verify_day(store, DAY, public, events).ok
    tampered = "recordings/2026/09/21/C%3A1.wav"
    store.client.put_object(store.bucket, tampered, io.BytesIO(b"forged"), 6)  # a new version
    report = verify_day(store, DAY, public, events)
    assert report.mismatched == (tampered,) and not report.ok


def test_manifests_are_locked_like_recordings(s3: S3Server, tmp_path: Path) -> None:
    store, _ = filled_store(s3, 1)
    name, _ = ManifestWriter(store, keyed(tmp_path), retention_days=1).write_day(DAY)
    for key in (name, name + ".sig"):
        found = store.find(key)
        assert found is not None
        retention = store.client.get_object_retention(store.bucket, key, found.version_id)
        assert retention is not None and retention.mode == COMPLIANCE
        with pytest.raises(S3Error):
            store.client.remove_object(store.bucket, key, version_id=found.version_id)


def test_verify_trusts_only_the_pinned_key(s3: S3Server, tmp_path: Path) -> None:
    """A forger who rewrites the manifest and signs it with a key of their own, publishing that
    key in the bucket, fails against the key the auditor pinned."""
    store, events = filled_store(s3, 2)
    pinned = load_public_key(public_key_path(keyed(tmp_path)))
    forger = keyed(tmp_path / "forger")
    ManifestWriter(store, forger).write_day(DAY)  # also replaces manifests/ed25519.pub.pem
    with pytest.raises(ManifestInvalid, match="signature"):
        verify_day(store, DAY, pinned, events)


def test_verify_holds_the_announcements_against_store_and_manifest(
    s3: S3Server, tmp_path: Path
) -> None:
    store, events = filled_store(s3, 2)
    key_file = keyed(tmp_path)
    writer = ManifestWriter(store, key_file)
    writer.write_day(DAY)
    public = load_public_key(public_key_path(key_file))
    assert verify_day(store, DAY, public, events).ok

    late = store_recording(store, "C:late", b"late audio")  # after the manifest was written
    report = verify_day(store, DAY, public, [*events, late])
    assert report.unlisted == (late.object_key,) and not report.ok
    assert any("C%3Alate" in line for line in report.announced)
    assert writer.amend_for(late.object_key, today=date(2026, 9, 23)) == manifest_key(DAY)
    assert verify_day(store, DAY, public, [*events, late]).ok
    assert writer.amend_for(late.object_key, today=DAY) is None  # today's: not written yet

    lying = events[0].model_copy(update={"sha256": "0" * 64})
    wrong_version = events[1].model_copy(update={"version_id": "no-such-version"})
    report = verify_day(store, DAY, public, [lying, wrong_version, late])
    assert len(report.announced) == 3 and not report.ok  # hash, version, manifest line


def test_keygen_is_explicit_and_never_replaces_a_key(tmp_path: Path) -> None:
    key_file = tmp_path / "k" / "manifest.pem"
    with pytest.raises(ManifestKeyError, match="callrec mixer keygen"):
        load_key(key_file)
    runner = CliRunner()
    made = runner.invoke(app, ["keygen", "--key", str(key_file)])
    assert made.exit_code == 0 and str(public_key_path(key_file)) in made.output
    before = key_file.read_bytes()
    again = runner.invoke(app, ["keygen", "--key", str(key_file)])
    assert again.exit_code == 1 and key_file.read_bytes() == before


def test_cli_verify_exit_codes(kafka: KafkaBroker, s3: S3Server, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    store, events = filled_store(s3, 2)
    key_file = keyed(tmp_path)
    for name, value in {
        "CALLREC_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "CALLREC_S3_ENDPOINT": s3.endpoint, "CALLREC_S3_ACCESS_KEY": s3.access_key,
        "CALLREC_S3_SECRET_KEY": s3.secret_key, "CALLREC_S3_BUCKET": store.bucket,
        "CALLREC_MIXER_MANIFEST_KEY": str(key_file),
    }.items():
        monkeypatch.setenv(name, value)
    run_sync(publish(kafka.bootstrap, events))
    runner = CliRunner()
    written = runner.invoke(app, ["manifest", "--day", DAY.isoformat()])
    assert written.exit_code == 0, written.output
    unpinned = runner.invoke(app, ["verify", "--day", DAY.isoformat()])
    assert unpinned.exit_code == 2 and "pinned" in unpinned.output
    monkeypatch.setenv("CALLREC_MIXER_MANIFEST_PUBLIC_KEY", str(public_key_path(key_file)))
    checked = runner.invoke(app, ["verify", "--day", DAY.isoformat()])
    assert checked.exit_code == 0, checked.output
    assert "2 recordings checked, 2 announcements" in checked.output
    store.client.remove_object(store.bucket, "recordings/2026/09/21/C%3A0.wav")
    failed = runner.invoke(app, ["verify", "--day", DAY.isoformat()])
    assert failed.exit_code == 1 and "MISSING: recordings/2026/09/21/C%3A0.wav" in failed.output


async def test_a_late_recording_amends_its_days_manifest(
    kafka: KafkaBroker, s3: S3Server, tmp_path: Path
) -> None:
    cluster = new_cluster()
    # the daily run never fires (hour 24): only the late recording's amendment can list it
    settings = settings_from(mixer_env(kafka, s3, tmp_path, cluster,
                                       CALLREC_MIXER_MANIFEST_HOUR_UTC="24"))
    yesterday_us = T0_US - 86_400_000_000
    day = datetime.fromtimestamp(yesterday_us / 1e6, UTC).date()
    store = store_from(settings)
    store.ensure_bucket(settings.lock)
    writer = ManifestWriter(store, settings.mixer_manifest_key)
    await asyncio.to_thread(writer.write_day, day)  # yesterday's manifest, written before
    key = f"{cluster}:late"
    near, far, done = simple_call(key, packets=25, started_us=yesterday_us)
    async with running(settings):
        await publish(kafka.bootstrap, [*near, *far, done])
        [event] = await archived(kafka.bootstrap, {key}, within=60)
    assert settings.mixer_manifest_public_key is not None
    public = load_public_key(settings.mixer_manifest_public_key)
    report = await asyncio.to_thread(verify_day, store, day, public, [event])
    assert report.ok and report.checked == 1, report
