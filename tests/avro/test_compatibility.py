"""The schema set stays backward compatible with its last committed version."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Iterator
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


def git(*args: str, repo: Path = REPO) -> str | None:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else None


def last_committed_version(path: Path, repo: Path = REPO) -> dict[str, Any] | None:
    """The schema as last committed, or (when the tree equals HEAD) as before its last change."""
    rel = path.relative_to(repo).as_posix()
    at_head = git("show", f"HEAD:{rel}", repo=repo)
    if at_head is not None and json.loads(at_head) != json.loads(path.read_text()):
        return dict(json.loads(at_head))
    last_change = (git("log", "-n", "1", "--format=%H", "HEAD", "--", rel, repo=repo) or "").strip()
    before = git("show", f"{last_change}^:{rel}", repo=repo) if last_change else None
    return dict(json.loads(before)) if before else None


needs_git = pytest.mark.skipif(shutil.which("git") is None or git("rev-parse", "HEAD") is None,
                               reason="needs a git checkout with history")


@needs_git
@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_current_schema_reads_what_the_last_committed_one_wrote(path: Path) -> None:
    old = last_committed_version(path)
    if old is None:
        pytest.skip("no earlier version in git: nothing was written with an older schema")
    assert incompatibilities(old, codec.load_schema(path)) == []


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.parametrize(
    ("change", "breaks"),
    [({"name": "b", "type": "string"}, True),
     ({"name": "b", "type": ["null", "string"], "default": None}, False)],
)  # fmt: skip
def test_the_last_committed_version_is_found_and_a_breaking_change_caught(
    tmp_path: Path, change: dict[str, Any], breaks: bool
) -> None:
    # given a repository where a schema was committed, then changed
    schema = tmp_path / "E.avsc"
    for args in (["init", "-q"], ["config", "user.email", "t@t"], ["config", "user.name", "t"]):
        git(*args, repo=tmp_path)
    schema.write_text(json.dumps(RECORD))
    git("add", "E.avsc", repo=tmp_path)
    git("commit", "-q", "-m", "v1", repo=tmp_path)
    changed = with_fields(change)
    schema.write_text(json.dumps(changed))
    for committed in (False, True):  # first in the work tree only, then committed
        if committed:
            git("commit", "-q", "-am", "v2", repo=tmp_path)
        # when the version before it is looked up, then it is v1, and the change judged
        old = last_committed_version(schema, repo=tmp_path)
        assert old == RECORD
        assert bool(incompatibilities(old, changed)) is breaks


def older_shape(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The schema as it was before its optional fields (those with a default) were added."""
    fields = [f for f in schema["fields"] if "default" not in f]
    return None if len(fields) == len(schema["fields"]) else {**schema, "fields": fields}


def older_versions() -> list[tuple[str, dict[str, Any]]]:
    """Every writer version current code must read: those kept in avro/history, and a version
    built here for each schema that has optional fields (history/ may be empty)."""
    kept = [(p.stem.split(".")[0], codec.load_schema(p))
            for p in sorted(codec.HISTORY_DIR.glob("*.avsc"))]  # fmt: skip
    built = [(p.stem, old) for p in SCHEMA_FILES
             if (old := older_shape(codec.load_schema(p))) is not None]  # fmt: skip
    return kept + built


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The decoder, knowing the versions of `older_versions` as avro/history would hold them."""
    directory = tmp_path_factory.mktemp("history")
    for n, (name, schema) in enumerate(older_versions()):
        (directory / f"{name}.{n}.avsc").write_text(json.dumps(schema))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codec, "HISTORY_DIR", directory)
        codec._registry.cache_clear()
        yield
    codec._registry.cache_clear()


@pytest.mark.parametrize(("name", "old"), older_versions(),
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(older_versions())])
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_older_versions_resolve_into_current_models(
    history: None, name: str, old: dict[str, Any], data: st.DataObject
) -> None:
    # given bytes an older writer produced (its own fingerprint)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(old, named_schemas={}),
                               data.draw(datum(old)))  # fmt: skip
    encoded = codec.MARKER + codec.schema_fingerprint(old) + body.getvalue()
    # when decoded by today's code, then it is today's model, the missing fields at their default
    event = codec.decode(encoded)
    assert type(event).__name__ == name
    current = codec.load_schema(codec.SCHEMA_DIR / f"{name}.avsc")
    have = {f["name"] for f in old["fields"]}
    for field in current["fields"]:
        if field["name"] not in have:
            assert getattr(event, field["name"]) == field["default"], field["name"]


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
