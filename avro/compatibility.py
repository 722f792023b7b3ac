"""Backward compatibility of schema versions: can a reader with the new schema read old data?

Outside consumers and our own replays read years of retained events, so every change to a schema
in ``schemas/`` must keep old bytes readable (Avro spec, "Schema Resolution").
"""

from __future__ import annotations

from typing import Any

PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
NAMED = {"record", "enum", "fixed"}


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    kind: str = schema["type"]
    return kind if isinstance(kind, str) else _kind(kind)


def _names(schema: dict[str, Any]) -> set[str]:
    return {schema["name"], *schema.get("aliases", [])}


def incompatibilities(writer: Any, reader: Any, path: str = "") -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader``; empty when it can."""
    if isinstance(writer, list):
        return [p for branch in writer for p in incompatibilities(branch, reader, path)]
    if isinstance(reader, list):
        if any(not incompatibilities(writer, branch, path) for branch in reader):
            return []
        return [f"{path or '<root>'}: {_kind(writer)} fits no branch of the new union"]
    if isinstance(writer, dict) and isinstance(writer["type"], (dict, list)):
        return incompatibilities(writer["type"], reader, path)
    if isinstance(reader, dict) and isinstance(reader["type"], (dict, list)):
        return incompatibilities(writer, reader["type"], path)
    w, r = _kind(writer), _kind(reader)
    if w != r:
        if r in PROMOTIONS.get(w, set()):
            return []
        return [f"{path or '<root>'}: {w} cannot be read as {r}"]
    if w in NAMED and writer["name"] not in _names(reader):
        return [f"{path}: {writer['name']} renamed to {reader['name']} without an alias"]
    if w == "record":
        return _record(writer, reader, path)
    if w == "enum":
        lost = set(writer["symbols"]) - set(reader["symbols"])
        if lost and "default" not in reader:
            return [f"{path}: enum symbols {sorted(lost)} removed and the enum has no default"]
        return []
    if w == "array":
        return incompatibilities(writer["items"], reader["items"], f"{path}[]")
    if w == "map":
        return incompatibilities(writer["values"], reader["values"], f"{path}{{}}")
    if w == "fixed" and writer["size"] != reader["size"]:
        return [f"{path}: fixed size changed"]
    return []


def _record(writer: dict[str, Any], reader: dict[str, Any], path: str) -> list[str]:
    problems: list[str] = []
    written = {f["name"]: f for f in writer["fields"]}
    for field in reader["fields"]:
        here = f"{path}.{field['name']}" if path else field["name"]
        source = next(
            (written[n] for n in (field["name"], *field.get("aliases", [])) if n in written), None
        )
        if source is None:
            if "default" not in field:
                problems.append(f"{here}: new field without a default")
            continue
        problems += incompatibilities(source["type"], field["type"], here)
    return problems
