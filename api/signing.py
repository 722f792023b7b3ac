"""Short-lived signed playback URLs: an ``<audio>`` element cannot send a bearer header.

The signature is an HMAC-SHA256 over the call, the token id, the purpose (play or download)
and the expiry, so a URL is good for one call, one user, one purpose and a few minutes; it
carries the token's public id, never the token. Revoking the token kills its URLs too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path


def load_or_create_key(path: Path) -> bytes:
    """The replicas' shared HMAC key, made once with mode 0600."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another replica made it first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    return path.read_bytes()


def sign(key: bytes, call_key: str, token_id: str, purpose: str, expires: int) -> str:
    message = f"{call_key}\n{token_id}\n{purpose}\n{expires}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def valid(key: bytes, call_key: str, token_id: str, purpose: str, expires: int,
          signature: str, now: float) -> bool:
    """True when the signature is ours for exactly these values and not expired."""
    if expires < now:
        return False
    return hmac.compare_digest(sign(key, call_key, token_id, purpose, expires), signature)
