"""Signed daily manifests: checked with the real openssl binary; `verify` catches tampering."""

from __future__ import annotations

import hashlib
import io
import subprocess
import uuid
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from callrec.infra.s3 import S3Server
from callrec.sinks.cli import app
from callrec.sinks.errors import ManifestInvalid
from callrec.sinks.manifests import (
    ManifestEntry,
    ManifestWriter,
    load_public_key,
    manifest_key,
    parse_manifest,
    public_key_path,
    render_manifest,
    verify_day,
)
from callrec.sinks.store import RecordingStore, connect

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


def filled_store(s3: S3Server, count: int) -> RecordingStore:
    store = RecordingStore(connect(s3.endpoint, s3.access_key, s3.secret_key, False),
                           f"rec-{uuid.uuid4().hex[:12]}")
    store.ensure_bucket(object_lock=True)
    for n in range(count):
        data = uuid.uuid4().bytes * 10
        store.put(f"recordings/2026/09/21/C%3A{n}.wav", data, "audio/wav",
                  {"sha256": hashlib.sha256(data).hexdigest()}, None)
    return store


def test_openssl_verifies_the_signature_and_verify_catches_a_changed_object(
    s3: S3Server, tmp_path: Path
) -> None:
    store = filled_store(s3, 3)
    key_file = tmp_path / "keys" / "manifest.pem"
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
    assert verify_day(store, DAY, public).ok
    tampered = "recordings/2026/09/21/C%3A1.wav"
    store.client.put_object(store.bucket, tampered, io.BytesIO(b"forged"), 6)  # a new version
    report = verify_day(store, DAY, public)
    assert report.mismatched == (tampered,) and not report.ok


def test_cli_verify_exit_codes(s3: S3Server, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    store = filled_store(s3, 2)
    key_file = tmp_path / "manifest.pem"
    for name, value in {
        "CALLREC_S3_ENDPOINT": s3.endpoint, "CALLREC_S3_ACCESS_KEY": s3.access_key,
        "CALLREC_S3_SECRET_KEY": s3.secret_key, "CALLREC_S3_BUCKET": store.bucket,
        "CALLREC_MIXER_MANIFEST_KEY": str(key_file),
    }.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    written = runner.invoke(app, ["manifest", "--day", DAY.isoformat()])
    assert written.exit_code == 0, written.output
    checked = runner.invoke(app, ["verify", "--day", DAY.isoformat()])
    assert checked.exit_code == 0 and "2 recordings checked" in checked.output
    store.client.remove_object(store.bucket, "recordings/2026/09/21/C%3A0.wav")
    failed = runner.invoke(app, ["verify", "--day", DAY.isoformat()])
    assert failed.exit_code == 1 and "MISSING: recordings/2026/09/21/C%3A0.wav" in failed.output
