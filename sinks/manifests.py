"""Daily integrity manifests: every recording of a day with its sha256, signed with Ed25519.

The manifest is in ``sha256sum`` format ("<hex>  <key>" per line, sorted by key) and its
signature is raw Ed25519 (64 bytes), so anyone holding the public key can check it with stock
tools (``openssl pkeyutl -verify -pubin -inkey KEY.pub.pem -rawin -in DAY.sha256 -sigfile
DAY.sha256.sig``) and then re-hash the objects. Ed25519 signatures are deterministic: the same
manifest always gets the same signature, so two workers writing it agree byte for byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from callrec.sinks.errors import ManifestInvalid, StoreUnavailable
from callrec.sinks.naming import MANIFEST_PREFIX, day_prefix
from callrec.sinks.store import RecordingStore

log = logging.getLogger(__name__)
PUBLIC_KEY_OBJECT = f"{MANIFEST_PREFIX}/ed25519.pub.pem"


@dataclass(frozen=True)
class ManifestEntry:
    key: str
    sha256: str


def manifest_key(day: date) -> str:
    return f"{MANIFEST_PREFIX}/{day:%Y/%m/%d}.sha256"


def render_manifest(entries: Iterable[ManifestEntry]) -> bytes:
    return "".join(f"{e.sha256}  {e.key}\n" for e in sorted(entries, key=lambda e: e.key)).encode()


def parse_manifest(data: bytes) -> list[ManifestEntry]:
    entries = []
    for number, line in enumerate(data.decode().splitlines(), 1):
        digest, sep, key = line.partition("  ")
        if not sep or len(digest) != 64:
            raise ManifestInvalid(f"manifest line {number} is not '<sha256>  <key>'")
        entries.append(ManifestEntry(key, digest))
    return entries


def public_key_path(private_key: Path) -> Path:
    return private_key.with_name(private_key.stem + ".pub.pem")


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The signing key; a new one is made (mode 0600) with its public half beside it."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ManifestInvalid(f"{path} is not an Ed25519 private key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_key_path(path).write_bytes(public_pem(key))
    log.info("created manifest signing key %s", path)
    return key


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ManifestInvalid(f"{path} is not an Ed25519 public key")
    return key


class ManifestWriter:
    def __init__(self, store: RecordingStore, key_path: Path) -> None:
        self.store = store
        self.key_path = key_path

    def write_day(self, day: date) -> tuple[str, int]:
        """Sign and store the manifest of one day's recordings; returns its key and size."""
        key = load_or_create_key(self.key_path)
        entries = [self._entry(k) for k in self.store.keys(day_prefix(day))]
        manifest = render_manifest(entries)
        name = manifest_key(day)
        self.store.replace(PUBLIC_KEY_OBJECT, public_pem(key), "application/x-pem-file")
        self.store.replace(name, manifest, "text/plain")
        self.store.replace(name + ".sig", key.sign(manifest), "application/octet-stream")
        return name, len(entries)

    def _entry(self, key: str) -> ManifestEntry:
        found = self.store.find(key)
        digest = found.sha256 if found is not None else None
        if digest is None:  # not written by the mixer: hash what is there
            digest = hashlib.sha256(self.store.read(key)).hexdigest()
        return ManifestEntry(key, digest)

    async def run_daily(self, hour_utc: int, stop: asyncio.Event) -> None:
        """Write yesterday's manifest once past ``hour_utc`` each day, until ``stop``."""
        written: date | None = None
        while not stop.is_set():
            now = datetime.now(UTC)
            yesterday = (now - timedelta(days=1)).date()
            if now.hour >= hour_utc and written != yesterday:
                try:
                    name, count = await asyncio.to_thread(self.write_day, yesterday)
                    log.info("wrote manifest %s (%d recordings)", name, count)
                    written = yesterday
                except StoreUnavailable as e:
                    log.warning("manifest for %s not written yet: %s", yesterday, e)
            try:
                await asyncio.wait_for(stop.wait(), timeout=60)
            except TimeoutError:
                pass


@dataclass(frozen=True)
class VerifyReport:
    manifest: str
    checked: int
    mismatched: tuple[str, ...]
    missing: tuple[str, ...]
    unlisted: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatched and not self.missing


def verify_day(store: RecordingStore, day: date, public_key: Ed25519PublicKey) -> VerifyReport:
    """Check the manifest's signature, then re-hash every object it lists."""
    name = manifest_key(day)
    manifest = store.read(name)
    try:
        public_key.verify(store.read(name + ".sig"), manifest)
    except InvalidSignature:
        raise ManifestInvalid(f"the signature of {name} does not match its content") from None
    entries = parse_manifest(manifest)
    present = set(store.keys(day_prefix(day)))
    mismatched, missing = [], []
    for entry in entries:
        if entry.key not in present:
            missing.append(entry.key)
        elif hashlib.sha256(store.read(entry.key)).hexdigest() != entry.sha256:
            mismatched.append(entry.key)
    unlisted = sorted(present - {e.key for e in entries})
    return VerifyReport(name, len(entries), tuple(mismatched), tuple(missing), tuple(unlisted))
