"""Every SQL statement of the read model, and nothing else (routes never hold SQL).

One SQLite file per replica, WAL mode: the consumer writes in short transactions, readers see
the last committed state. Consumed offsets are written in the same transaction as the rows they
produced, so a restart resumes exactly after the last applied record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from callrec.api.rows import CallFilter, Cursor, micros, prefix_bounds

CALL_COLUMNS = (
    "call_key", "version", "event_time_us", "status", "abnormal_reason", "abnormal_detail",
    "cluster_id", "near_end_addr", "near_end_device", "far_end_addr", "far_end_device",
    "destination", "started_at_us", "ended_at_us", "segments", "recorders", "legs_json",
)
RECORDING_COLUMNS = (
    "call_key", "call_version", "event_time_us", "call_status", "abnormal_reason", "bucket",
    "object_key", "version_id", "format", "channels", "sample_rate", "started_at_us",
    "duration_ms", "size_bytes", "sha256", "partial", "gaps_json",
)
AUDIT_COLUMNS = (
    "event_id", "event_time_us", "producer_id", "call_key", "action", "actor", "token_id",
    "role", "client_addr", "user_agent", "object_key", "version_id", "range_start",
    "range_end", "outcome",
)

# A call's own rows are gone before these run (delete/update triggers), so only a call whose two
# numbers are equal could collide with itself.
_ADD_PARTIES = """  INSERT INTO parties SELECT NEW.near_end_addr, NEW.started_at_us, NEW.call_key
    WHERE NEW.near_end_addr IS NOT NULL;
  INSERT INTO parties SELECT NEW.far_end_addr, NEW.started_at_us, NEW.call_key
    WHERE NEW.far_end_addr IS NOT NULL AND NEW.far_end_addr IS NOT NEW.near_end_addr;
"""
_DROP_PARTIES = """  DELETE FROM parties WHERE call_key = OLD.call_key
    AND started_at_us = OLD.started_at_us;
"""
# A new call's parties are added by ADD_PARTIES after the batch's upserts, not by an insert
# trigger: a trigger program per row cost a third of SQLite's time at catch-up (files made
# before lose theirs here).
TRIGGERS = (
    "DROP TRIGGER IF EXISTS calls_parties_insert;\n"
    f"CREATE TRIGGER IF NOT EXISTS calls_parties_update AFTER UPDATE ON calls BEGIN\n"
    f"{_DROP_PARTIES}{_ADD_PARTIES}END;\n"
    f"CREATE TRIGGER IF NOT EXISTS calls_parties_delete AFTER DELETE ON calls BEGIN\n"
    f"{_DROP_PARTIES}END;\n"
)
ADD_PARTIES = (
    # The parties of the row the upsert left, whichever won (an insert, or a replaced row whose
    # update trigger already added them, or an older snapshot that changed nothing): existing
    # ones are ignored, so the parties always mirror the stored calls.
    "INSERT OR IGNORE INTO parties "
    "SELECT near_end_addr, started_at_us, call_key FROM calls "
    "WHERE call_key = ?1 AND near_end_addr IS NOT NULL "
    "UNION ALL SELECT far_end_addr, started_at_us, call_key FROM calls "
    "WHERE call_key = ?1 AND far_end_addr IS NOT NULL AND far_end_addr IS NOT near_end_addr"
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
  call_key TEXT PRIMARY KEY, version INTEGER NOT NULL, event_time_us INTEGER NOT NULL,
  status TEXT NOT NULL, abnormal_reason TEXT, abnormal_detail TEXT, cluster_id TEXT NOT NULL,
  near_end_addr TEXT, near_end_device TEXT, far_end_addr TEXT, far_end_device TEXT,
  destination TEXT, started_at_us INTEGER NOT NULL, ended_at_us INTEGER,
  segments INTEGER NOT NULL, recorders TEXT NOT NULL, legs_json TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at_us, call_key);
-- Either party's number, kept by ADD_PARTIES and triggers: a party search is one index range
-- scan that also filters the time range inside the index, instead of visiting every call of the
-- range.
CREATE TABLE IF NOT EXISTS parties (
  party TEXT NOT NULL, started_at_us INTEGER NOT NULL, call_key TEXT NOT NULL,
  PRIMARY KEY (party, started_at_us, call_key)
) WITHOUT ROWID;
{triggers}CREATE INDEX IF NOT EXISTS calls_status ON calls (status, started_at_us);
CREATE TABLE IF NOT EXISTS recordings (
  call_key TEXT PRIMARY KEY, call_version INTEGER NOT NULL, event_time_us INTEGER NOT NULL,
  call_status TEXT NOT NULL, abnormal_reason TEXT, bucket TEXT NOT NULL,
  object_key TEXT NOT NULL, version_id TEXT, format TEXT NOT NULL, channels INTEGER NOT NULL,
  sample_rate INTEGER NOT NULL, started_at_us INTEGER NOT NULL, duration_ms INTEGER NOT NULL,
  size_bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, partial INTEGER NOT NULL,
  gaps_json TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
  event_id TEXT PRIMARY KEY, event_time_us INTEGER NOT NULL, producer_id TEXT NOT NULL,
  call_key TEXT NOT NULL, action TEXT NOT NULL, actor TEXT NOT NULL, token_id TEXT NOT NULL,
  role TEXT NOT NULL, client_addr TEXT, user_agent TEXT, object_key TEXT, version_id TEXT,
  range_start INTEGER, range_end INTEGER, outcome TEXT
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (event_time_us);
CREATE INDEX IF NOT EXISTS audit_call ON audit (call_key, event_time_us);
CREATE TABLE IF NOT EXISTS offsets (
  topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
  PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS peaks (
  sha256 TEXT NOT NULL, buckets INTEGER NOT NULL, peaks BLOB NOT NULL,
  PRIMARY KEY (sha256, buckets)
) WITHOUT ROWID;
"""


def _upsert(table: str, columns: tuple[str, ...], newer: str) -> str:
    """Insert, or replace the row only when the incoming one is newer (compacted topics may
    replay an older value after a newer one; the newest always wins, whatever the order)."""
    names = ", ".join(columns)
    marks = ", ".join("?" * len(columns))
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    return (f"INSERT INTO {table} ({names}) VALUES ({marks}) "
            f"ON CONFLICT({columns[0]}) DO UPDATE SET {sets} WHERE {newer}")


UPSERT_CALL = _upsert(
    "calls", CALL_COLUMNS,
    "excluded.version > calls.version OR (excluded.version = calls.version "
    "AND excluded.event_time_us > calls.event_time_us)",
)
UPSERT_RECORDING = _upsert(
    "recordings", RECORDING_COLUMNS,
    "excluded.call_version > recordings.call_version OR (excluded.call_version = "
    "recordings.call_version AND excluded.event_time_us > recordings.event_time_us)",
)
INSERT_AUDIT = (f"INSERT OR IGNORE INTO audit ({', '.join(AUDIT_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(AUDIT_COLUMNS))})")


def connect(path: Path | str) -> sqlite3.Connection:
    """The writer's connection, with the schema in place."""
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.executescript(SCHEMA.replace("{triggers}", TRIGGERS))
    return conn


def reader(path: Path | str) -> sqlite3.Connection:
    """A request thread's connection (sqlite3 objects stay in their thread): it only reads,
    plus the peaks cache; the schema is the writer's business."""
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def apply_batch(
    conn: sqlite3.Connection,
    calls: Iterable[tuple[object, ...]],
    recordings: Iterable[tuple[object, ...]],
    audits: Iterable[tuple[object, ...]],
    offsets: dict[tuple[str, int], int],
) -> None:
    """Rows and the offsets they were read up to, in one transaction: all or nothing."""
    calls = list(calls)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(UPSERT_CALL, calls)
        conn.executemany(ADD_PARTIES, [(row[0],) for row in calls])
        conn.executemany(UPSERT_RECORDING, recordings)
        conn.executemany(INSERT_AUDIT, audits)
        conn.executemany(
            "INSERT INTO offsets (topic, partition, next_offset) VALUES (?, ?, ?) "
            "ON CONFLICT(topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
            [(t, p, o) for (t, p), o in offsets.items()],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def stored_offsets(conn: sqlite3.Connection) -> dict[tuple[str, int], int]:
    rows = conn.execute("SELECT topic, partition, next_offset FROM offsets").fetchall()
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


def _where(f: CallFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    times: list[str] = []
    if f.started_from is not None:
        times.append("started_at_us >= ?")
        args.append(micros(f.started_from))
    if f.started_to is not None:
        times.append("started_at_us < ?")
        args.append(micros(f.started_to))
    if f.party:
        # The time range goes inside: the parties index answers both at once.
        low, high = prefix_bounds(f.party)
        inner = " AND ".join(["p.party >= ?", "p.party < ?", *(f"p.{t}" for t in times)])
        clauses.append(f"c.call_key IN (SELECT p.call_key FROM parties p WHERE {inner})")
        args = [low, high, *args]
    else:
        clauses += [f"c.{t}" for t in times]
    if f.device:
        clauses.append("(c.near_end_device = ? OR c.far_end_device = ?)")
        args += [f.device, f.device]
    for column, value in (("c.cluster_id", f.cluster), ("c.status", f.status),
                          ("c.abnormal_reason", f.abnormal_reason)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    if f.recorder:
        clauses.append("instr(c.recorders, ?) > 0")
        args.append(f",{f.recorder},")
    if f.has_recording is not None:
        clauses.append(f"r.call_key IS {'NOT ' if f.has_recording else ''}NULL")
    return (" AND ".join(clauses) or "1"), args


SUMMARY = (
    "SELECT c.call_key, c.version, c.status, c.abnormal_reason, c.cluster_id, "
    "c.near_end_addr, c.near_end_device, c.far_end_addr, c.far_end_device, c.started_at_us, "
    "c.ended_at_us, c.recorders, r.format, r.duration_ms, r.partial, "
    "r.call_key IS NOT NULL AS has_recording "
    "FROM calls c LEFT JOIN recordings r ON r.call_key = c.call_key"
)


def search_calls(
    conn: sqlite3.Connection, f: CallFilter, limit: int, after: Cursor | None
) -> list[sqlite3.Row]:
    """One page, newest first; ``after`` continues from the last row of the previous page."""
    where, args = _where(f)
    if after is not None:
        where += " AND (c.started_at_us < ? OR (c.started_at_us = ? AND c.call_key < ?))"
        args += [after.started_us, after.started_us, after.call_key]
    sql = (f"{SUMMARY} WHERE {where} "
           "ORDER BY c.started_at_us DESC, c.call_key DESC LIMIT ?")
    return conn.execute(sql, [*args, limit]).fetchall()


def count_calls(conn: sqlite3.Connection, f: CallFilter) -> int:
    where, args = _where(f)
    join = " LEFT JOIN recordings r ON r.call_key = c.call_key" if "r." in where else ""
    row = conn.execute(f"SELECT count(*) FROM calls c{join} WHERE {where}", args).fetchone()
    return int(row[0])


def get_call(conn: sqlite3.Connection, call_key: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM calls WHERE call_key = ?", (call_key,)).fetchone()
    return row


def get_recording(conn: sqlite3.Connection, call_key: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM recordings WHERE call_key = ?", (call_key,)).fetchone()
    return row


def active_calls(conn: sqlite3.Connection, limit: int) -> list[sqlite3.Row]:
    sql = (f"{SUMMARY} WHERE c.status = 'ACTIVE' "
           "ORDER BY c.started_at_us DESC, c.call_key DESC LIMIT ?")
    return conn.execute(sql, (limit,)).fetchall()


def summaries(conn: sqlite3.Connection, call_keys: list[str]) -> list[sqlite3.Row]:
    marks = ", ".join("?" * len(call_keys))
    return conn.execute(f"{SUMMARY} WHERE c.call_key IN ({marks})", call_keys).fetchall()


def audit_log(
    conn: sqlite3.Connection, call_key: str | None, limit: int, before_us: int | None
) -> list[sqlite3.Row]:
    """Access events, newest first, optionally of one call."""
    clauses: list[str] = ["1"]
    args: list[Any] = []
    if call_key is not None:
        clauses.append("call_key = ?")
        args.append(call_key)
    if before_us is not None:
        clauses.append("event_time_us < ?")
        args.append(before_us)
    sql = (f"SELECT * FROM audit WHERE {' AND '.join(clauses)} "
           "ORDER BY event_time_us DESC, event_id DESC LIMIT ?")
    return conn.execute(sql, [*args, limit]).fetchall()


def cached_peaks(conn: sqlite3.Connection, sha256: str, buckets: int) -> bytes | None:
    row = conn.execute("SELECT peaks FROM peaks WHERE sha256 = ? AND buckets = ?",
                       (sha256, buckets)).fetchone()
    return None if row is None else bytes(row[0])


def store_peaks(conn: sqlite3.Connection, sha256: str, buckets: int, peaks: bytes) -> None:
    conn.execute("INSERT OR REPLACE INTO peaks (sha256, buckets, peaks) VALUES (?, ?, ?)",
                 (sha256, buckets, peaks))
