"""`callrec api token add|list|revoke`: the token is printed once, stored hashed, revocable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from callrec.api.tokens import Role, TokenStore


def callrec(tokens: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALLREC_API_TOKENS_FILE": str(tokens)}
    return subprocess.run([sys.executable, "-m", "callrec.cli", "api", "token", *args],
                          env=env, capture_output=True, text=True, timeout=60, check=False)


def test_token_lifecycle(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    added = callrec(tokens, "add", "carol", "--role", "auditor")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("crk_")
    assert token not in tokens.read_text() and token.rsplit("_", 1)[1] not in tokens.read_text()
    who = TokenStore(tokens).authenticate(token)
    assert who is not None and (who.name, who.role) == ("carol", Role.auditor)
    listed = callrec(tokens, "list").stdout
    assert who.token_id in listed and "carol" in listed and "auditor" in listed
    assert token not in listed
    revoked = callrec(tokens, "revoke", who.token_id)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert TokenStore(tokens).authenticate(token) is None
    assert "REVOKED" in callrec(tokens, "list").stdout
    unknown = callrec(tokens, "revoke", "nope")
    assert unknown.returncode == 1 and "no token" in unknown.stderr
    bad_role = callrec(tokens, "add", "dave", "--role", "root")
    assert bad_role.returncode != 0
