"""Is the stored recording the one that was archived? Three independent checks.

1. the object's bytes hash to the sha256 of its RecordingArchived event;
2. the day's manifest is signed by the archive's Ed25519 key;
3. that manifest lists the object with the same sha256.
A manifest exists only once its day is over (the mixer signs yesterday's), so 2 and 3 may be
"not yet" (ok = None) rather than failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from callrec.sinks.errors import ManifestInvalid
from callrec.sinks.manifests import manifest_key, parse_manifest

DAY = re.compile(r"/(\d{4})/(\d{2})/(\d{2})/")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None
    detail: str


def day_of(object_key: str) -> date | None:
    match = DAY.search(object_key)
    return date(*map(int, match.groups())) if match else None


def hash_check(archived: str, stored: str | None) -> Check:
    if stored is None:
        return Check("object_sha256", False, "the object is missing from the store")
    if stored != archived:
        return Check("object_sha256", False,
                     f"stored bytes hash to {stored}, RecordingArchived says {archived}")
    return Check("object_sha256", True, "stored bytes match RecordingArchived")


def manifest_checks(object_key: str, archived: str, manifest: bytes | None,
                    signature: bytes | None, public_pem: bytes | None) -> list[Check]:
    """Checks 2 and 3 from the manifest's bytes (pure: the caller fetched them)."""
    day = day_of(object_key)
    name = manifest_key(day) if day else "(no day in the key)"
    if manifest is None or signature is None:
        return [Check("manifest_signature", None, f"{name} is not written yet"),
                Check("manifest_entry", None, f"{name} is not written yet")]
    if public_pem is None:
        return [Check("manifest_signature", False, "no manifest public key to check with"),
                Check("manifest_entry", None, "signature not checked")]
    try:
        key = serialization.load_pem_public_key(public_pem)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 key")
        key.verify(signature, manifest)
    except (InvalidSignature, ValueError) as e:
        return [Check("manifest_signature", False, f"{name}: signature does not verify ({e!r})"),
                Check("manifest_entry", None, "signature not valid")]
    signed = Check("manifest_signature", True, f"{name} is signed by the archive key")
    try:
        entries = {e.key: e.sha256 for e in parse_manifest(manifest)}
    except ManifestInvalid as e:
        return [signed, Check("manifest_entry", False, str(e))]
    listed = entries.get(object_key)
    if listed is None:
        return [signed, Check("manifest_entry", False, f"{name} does not list {object_key}")]
    if listed != archived:
        return [signed, Check("manifest_entry", False,
                              f"{name} lists sha256 {listed}, RecordingArchived says {archived}")]
    return [signed, Check("manifest_entry", True, f"{name} lists the same sha256")]
