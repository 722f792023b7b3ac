"""The party index mirrors the stored calls whatever order and batches the snapshots come in.

Since ingest adds a new call's parties with one statement per batch (queries.ADD_PARTIES)
instead of an insert trigger, this checks the invariant the party search rests on: ``parties``
holds exactly both numbers of every stored call at its start time, nothing stale.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from callrec.api import queries
from callrec.api.rows import call_row
from callrec.avro.events import CallStatus
from tests.api.harness import call_record

T0 = datetime(2026, 12, 1, tzinfo=UTC)
NUMBERS = st.sampled_from([None, "1001", "1002", "2002", "5550100"])
SNAPSHOT = st.builds(
    lambda key, version, near, far, minute: call_record(
        f"C:{key}", near="x", far="x", started=T0 + timedelta(minutes=minute),
        status=CallStatus.ACTIVE, version=version,
    ).model_copy(update={"near_end_addr": near, "far_end_addr": far}),
    st.integers(0, 3), st.integers(1, 4), NUMBERS, NUMBERS, st.integers(0, 2),
)


def parties_of_stored_calls(conn: sqlite3.Connection) -> set[tuple[str, int, str]]:
    rows = conn.execute("SELECT call_key, near_end_addr, far_end_addr, started_at_us FROM calls")
    return {(number, r["started_at_us"], r["call_key"]) for r in rows
            for number in (r["near_end_addr"], r["far_end_addr"]) if number is not None}


@settings(max_examples=150, deadline=None)
@given(snapshots=st.lists(SNAPSHOT, max_size=12), cuts=st.sets(st.integers(1, 11)))
def test_parties_are_both_numbers_of_each_stored_call(snapshots: list, cuts: set[int]) -> None:
    # given snapshots of a few calls (numbers changing between versions), in any order,
    # applied in batches cut anywhere, each batch keeping the newest per key as Batch does
    conn = queries.connect(":memory:")
    bounds = [0, *sorted(c for c in cuts if c < len(snapshots)), len(snapshots)]
    for start, end in pairwise(bounds):
        newest: dict[str, tuple[object, ...]] = {}
        for snap in snapshots[start:end]:
            row, older = call_row(snap), newest.get(snap.call_key)
            if older is None or (row[1], row[2]) > (older[1], older[2]):
                newest[snap.call_key] = row
        queries.apply_batch(conn, newest.values(), [], [], {})
    # then the party index holds exactly the stored calls' numbers
    stored = {(r[0], r[1], r[2]) for r in conn.execute("SELECT * FROM parties")}
    assert stored == parties_of_stored_calls(conn)


def test_a_file_made_with_the_insert_trigger_loses_it(tmp_path: Path) -> None:
    # given a read model file from before (parties kept by an insert trigger too)
    db = tmp_path / "readmodel.sqlite3"
    old = queries.connect(db)
    old.execute("CREATE TRIGGER calls_parties_insert AFTER INSERT ON calls BEGIN "
                "INSERT INTO parties VALUES (NEW.near_end_addr, NEW.started_at_us, "
                "NEW.call_key); END")
    old.close()
    # when a replica opens it
    conn = queries.connect(db)
    # then only the update and delete triggers remain, and a new call is indexed once
    triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    assert triggers == {"calls_parties_update", "calls_parties_delete"}
    call = call_record("C:9", near="1001", far="2002", started=T0, status=CallStatus.ACTIVE)
    queries.apply_batch(conn, [call_row(call)], [], [], {})
    assert parties_of_stored_calls(conn) == {
        (r[0], r[1], r[2]) for r in conn.execute("SELECT * FROM parties")}
