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
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from callrec.avro.events import RecordingArchived
from callrec.sinks.errors import ManifestInvalid, ManifestKeyError, StoreUnavailable
from callrec.sinks.naming import MANIFEST_PREFIX, PREFIX, day_prefix
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


def generate_key(path: Path) -> Path:
    """Make the signing key (mode 0600) and its public half beside it; never over an existing
    key, whose manifests would no longer verify. Returns the public key's path, the one to pin
    (CALLREC_MIXER_MANIFEST_PUBLIC_KEY, CALLREC_API_MANIFEST_PUBLIC_KEY) and keep elsewhere."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ManifestKeyError(f"{path} exists: a manifest key is never replaced") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_key_path(path).write_bytes(public_pem(key))
    return public_key_path(path)


def load_key(path: Path) -> Ed25519PrivateKey:
    """The signing key; missing is an error, not a reason to make one (a silently new key
    would sign manifests no pinned public key accepts)."""
    if not path.exists():
        raise ManifestKeyError(
            f"no manifest signing key at {path}: create it once with `callrec mixer keygen` "
            "(CALLREC_MIXER_MANIFEST_KEY) and pin its public half")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ManifestKeyError(f"{path} is not an Ed25519 private key")
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
    """Writes the manifests of one store, one at a time (the daily run and the amendments a
    late recording triggers share the lock, so neither overwrites the other with less)."""

    def __init__(self, store: RecordingStore, key_path: Path, retention_days: int = 0) -> None:
        self.store = store
        self.key = load_key(key_path)
        self.retention_days = retention_days
        self._lock = threading.Lock()

    def write_day(self, day: date) -> tuple[str, int]:
        """Sign and store the manifest of one day's recordings; returns its key and size. The
        manifest and its signature are locked like recordings (a new version each time)."""
        with self._lock:
            entries = [self._entry(k) for k in self.store.keys(day_prefix(day))]
            manifest = render_manifest(entries)
            name = manifest_key(day)
            until = self._retain_until()
            self.store.replace(PUBLIC_KEY_OBJECT, public_pem(self.key), "application/x-pem-file")
            self.store.replace(name, manifest, "text/plain", until)
            self.store.replace(name + ".sig", self.key.sign(manifest),
                               "application/octet-stream", until)
            return name, len(entries)

    def amend_for(self, object_key: str, today: date | None = None) -> str | None:
        """A recording stored for a day whose manifest is already written (a late recording,
        a call that reopened): write that day's manifest again. Returns the amended manifest."""
        day = day_of(object_key)
        if day is None or day >= (today or datetime.now(UTC).date()):
            return None
        if self.store.find(manifest_key(day)) is None:
            return None  # not written yet: the daily run will list it
        name, _ = self.write_day(day)
        log.info("amended manifest %s for %s", name, object_key)
        return name

    def _retain_until(self) -> datetime | None:
        if self.retention_days <= 0:
            return None
        return datetime.now(UTC) + timedelta(days=self.retention_days)

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


def day_of(object_key: str) -> date | None:
    """The day of a recording's key (recordings/YYYY/MM/DD/...), None for any other key."""
    parts = object_key.split("/")
    if len(parts) < 5 or parts[0] != PREFIX:
        return None
    try:
        return date(int(parts[1]), int(parts[2]), int(parts[3]))
    except ValueError:
        return None


@dataclass(frozen=True)
class VerifyReport:
    manifest: str
    checked: int
    mismatched: tuple[str, ...]
    """Listed, but the object's current content has another hash."""
    missing: tuple[str, ...]
    """Listed, but no longer in the bucket."""
    unlisted: tuple[str, ...]
    """In the bucket for that day, but not in the manifest."""
    announced: tuple[str, ...] = ()
    """RecordingArchived events the store or the manifest contradicts, one line each."""

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.unlisted or self.announced)


def verify_day(store: RecordingStore, day: date, public_key: Ed25519PublicKey,
               announced: Iterable[RecordingArchived] = ()) -> VerifyReport:
    """Check the manifest's signature, re-hash every object it lists, and hold every
    RecordingArchived of the day against the store (its version, its hash) and the manifest."""
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
    contradicted = check_announced(store, {e.key: e.sha256 for e in entries}, announced)
    return VerifyReport(name, len(entries), tuple(mismatched), tuple(missing), tuple(unlisted),
                        tuple(contradicted))


def check_announced(store: RecordingStore, listed: dict[str, str],
                    announced: Iterable[RecordingArchived]) -> list[str]:
    """Each announced version must still be stored with the announced hash; the newest
    announcement of each call must be the manifest's line for its object."""
    problems: list[str] = []
    newest: dict[str, RecordingArchived] = {}
    for event in announced:
        what = f"{event.object_key} version {event.version_id}"
        data = _version_bytes(store, event.object_key, event.version_id)
        if data is None:
            problems.append(f"{what} announced for call {event.call_key} is not stored")
        elif hashlib.sha256(data).hexdigest() != event.sha256:
            problems.append(f"{what} does not have the announced sha256 {event.sha256}")
        known = newest.get(event.call_key)
        if known is None or event.call_version >= known.call_version:
            newest[event.call_key] = event
    for event in newest.values():
        if listed.get(event.object_key) != event.sha256:
            problems.append(f"{event.object_key}: the manifest does not list the announced "
                            f"sha256 {event.sha256} of call version {event.call_version}")
    return problems


def _version_bytes(store: RecordingStore, key: str, version_id: str | None) -> bytes | None:
    if store.find(key, version_id) is None:
        return None
    return store.read(key, version_id)
