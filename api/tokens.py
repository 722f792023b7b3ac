"""Bearer tokens with roles, stored hashed in one file the replicas share.

A token is ``crk_<id>_<secret>``: the id is public (it names the token in audit events and
listings), the secret is 32 random bytes and only its SHA-256 is kept. A token of that entropy
needs no slow hash; comparison is constant-time. Replicas re-read the file when it changes, so
``callrec api token revoke`` takes effect without a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path

from callrec.api.errors import TokenStoreError

PREFIX = "crk_"


class Role(IntEnum):
    """Each role can do everything the ones below it can."""

    viewer = 1
    auditor = 2
    admin = 3


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    role: str
    sha256: str
    created_at: str
    revoked_at: str | None = None


@dataclass(frozen=True)
class Principal:
    """Who is asking, as the routes and the audit see it."""

    token_id: str
    name: str
    role: Role


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split(token: str) -> tuple[str, str] | None:
    if not token.startswith(PREFIX):
        return None
    token_id, sep, secret = token[len(PREFIX):].partition("_")
    if not sep or not token_id or not secret:
        return None
    return token_id, secret


class TokenStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._edit_lock = threading.Lock()
        self._loaded_at: tuple[int, int] | None = None
        self._records: dict[str, TokenRecord] = {}

    def _load(self) -> dict[str, TokenRecord]:
        """Re-read the file when its mtime or size changed (a CLI edited it)."""
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._records, self._loaded_at = {}, None
                return self._records
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._loaded_at:
                try:
                    raw = json.loads(self.path.read_text())
                    self._records = {r["id"]: TokenRecord(**r) for r in raw["tokens"]}
                except (OSError, ValueError, KeyError, TypeError) as e:
                    raise TokenStoreError(f"token file {self.path} is unreadable: {e}") from e
                self._loaded_at = stamp
            return self._records

    @contextlib.contextmanager
    def _editing(self) -> Iterator[dict[str, TokenRecord]]:
        """Read-modify-write under an exclusive lock: a replica's request and a CLI call
        adding tokens at once must not lose one of them."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._edit_lock, open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = dict(self._load())
            yield records
            self._save(records)

    def _save(self, records: dict[str, TokenRecord]) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"tokens": [asdict(r) for r in records.values()]}, f, indent=1)
        os.replace(tmp, self.path)

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token; None for anything else."""
        parts = split(token)
        if parts is None:
            return None
        record = self._load().get(parts[0])
        if record is None or record.revoked_at is not None:
            return None
        if not hmac.compare_digest(record.sha256, _digest(parts[1])):
            return None
        return Principal(record.id, record.name, Role[record.role])

    def principal(self, token_id: str) -> Principal | None:
        """The principal of a token id still valid (a signed URL names the token by id)."""
        record = self._load().get(token_id)
        if record is None or record.revoked_at is not None:
            return None
        return Principal(record.id, record.name, Role[record.role])

    def add(self, name: str, role: Role) -> str:
        """Create a token; the returned secret is shown once and never stored."""
        with self._editing() as records:
            token_id = secrets.token_hex(4)
            while token_id in records:
                token_id = secrets.token_hex(4)
            secret = secrets.token_urlsafe(32)
            records[token_id] = TokenRecord(token_id, name, role.name, _digest(secret),
                                            datetime.now(UTC).isoformat(timespec="seconds"))
        return f"{PREFIX}{token_id}_{secret}"

    def list(self) -> list[TokenRecord]:
        return list(self._load().values())

    def revoke(self, token_id: str) -> TokenRecord:
        with self._editing() as records:
            if token_id not in records:
                raise TokenStoreError(f"no token with id {token_id}")
            records[token_id] = replace(
                records[token_id], revoked_at=datetime.now(UTC).isoformat(timespec="seconds"))
        return records[token_id]
