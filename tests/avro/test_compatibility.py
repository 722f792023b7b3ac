"""The schema set stays backward compatible with its last committed version."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callrec.avro import codec
from callrec.avro.compatibility import incompatibilities
from tests.avro.strategies import datum

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILES = sorted(codec.SCHEMA_DIR.glob("*.avsc"))


def git(*args: str) -> str | None:
    result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else None


def last_committed_version(path: Path) -> dict[str, Any] | None:
    """The schema as last committed, or (when the tree equals HEAD) as before its last change."""
    rel = path.relative_to(REPO).as_posix()
    at_head = git("show", f"HEAD:{rel}")
    if at_head is not None and json.loads(at_head) != json.loads(path.read_text()):
        return dict(json.loads(at_head))
    last_change = (git("log", "-n", "1", "--format=%H", "HEAD", "--", rel) or "").strip()
    before = git("show", f"{last_change}^:{rel}") if last_change else None
    return dict(json.loads(before)) if before else None


@pytest.mark.skipif(shutil.which("git") is None or git("rev-parse", "HEAD") is None,
                    reason="needs a git checkout with history")
@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_current_schema_reads_what_the_last_committed_one_wrote(path: Path) -> None:
    old = last_committed_version(path)
    if old is None:
        return  # a new event type: nothing was ever written with an older schema
    assert incompatibilities(old, codec.load_schema(path)) == []


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_history_schemas_resolve_into_current_models(path: Path, data: st.DataObject) -> None:
    # Each retained old version (avro/history/<Type>.<n>.avsc) must still decode to a model.
    for old_path in sorted(codec.HISTORY_DIR.glob(f"{path.stem}.*.avsc")):
        old = codec.load_schema(old_path)
        body = io.BytesIO()
        fastavro.schemaless_writer(body, fastavro.parse_schema(old, named_schemas={}),
                                   data.draw(datum(old)))
        encoded = codec.MARKER + codec.schema_fingerprint(old) + body.getvalue()
        assert type(codec.decode(encoded)).__name__ == path.stem


RECORD = {"type": "record", "name": "E", "fields": [{"name": "a", "type": "int"}]}


def with_fields(*fields: dict[str, Any]) -> dict[str, Any]:
    return {**RECORD, "fields": [*RECORD["fields"], *fields]}


@pytest.mark.parametrize(
    ("writer", "reader", "problem"),
    [
        (RECORD, with_fields({"name": "b", "type": ["null", "string"], "default": None}), None),
        (RECORD, with_fields({"name": "b", "type": "string"}), "new field without a default"),
        (with_fields({"name": "b", "type": "string"}), RECORD, None),
        (RECORD, {**RECORD, "fields": [{"name": "a", "type": "long"}]}, None),
        (RECORD, {**RECORD, "fields": [{"name": "a", "type": "string"}]}, "cannot be read"),
        (
            {"type": "enum", "name": "S", "symbols": ["A", "B"]},
            {"type": "enum", "name": "S", "symbols": ["A"]},
            "removed",
        ),
        (
            {"type": "enum", "name": "S", "symbols": ["A", "B"]},
            {"type": "enum", "name": "S", "symbols": ["A", "C"], "default": "A"},
            None,
        ),
        (RECORD, {**RECORD, "name": "F"}, "renamed"),
        (RECORD, {**RECORD, "name": "F", "aliases": ["E"]}, None),
        ("string", ["null", "string"], None),
        (["null", "string"], "string", "null cannot be read as string"),
        ("int", ["null", "string"], "fits no branch"),
    ],
)
def test_compatibility_rules(writer: Any, reader: Any, problem: str | None) -> None:
    found = incompatibilities(writer, reader)
    if problem is None:
        assert found == []
    else:
        assert any(problem in p for p in found), found
