"""REST read-model benchmark, run by hand: `.venv/bin/python bench/api_readmodel.py
[--calls 1000000 (0: ingest only)] [--ingest 100000]`.

1. Ingest: encoded CallRecord/RecordingArchived records -> decode -> rows -> one SQLite
   transaction per 5,000 records with their offsets (what a replica does per poll), in records
   per CPU-second. Ceilings: the same rows inserted already built (SQLite alone), and fastavro
   alone reading the same bytes (no models, times as longs). Goal >= 20,000/s.
2. Search on a read model of ``--calls`` calls over 30 days: time range (one day) + party
   prefix (either side), newest first, page of 50 plus the total count; p50/p99 over 500
   random queries. Ceiling: a primary-key lookup. Goal p99 < 50 ms. Then the day alone (the
   count visits the whole day's index range).
"""

from __future__ import annotations

import argparse
import io
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callrec.api import queries
from callrec.api.readmodel import Batch
from callrec.api.rows import CallFilter, call_row, recording_row
from callrec.avro import codec
from callrec.avro.events import CallRecord, CallStatus, RecordingArchived
from tests.api.harness import call_record

DAYS = 30
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def encoded_records(count: int) -> list[tuple[str, bytes]]:
    """Half snapshots, half recordings, as the two compacted topics carry them."""
    out = []
    for i in range(count // 2):
        call = call_record(f"Bench:{i}", near=f"{1000 + i % 9000}", far=f"555{i % 10**7:07d}",
                           started=T0 + timedelta(seconds=i), status=CallStatus.COMPLETED)
        out.append(("rec.calls.v1", codec.encode(call)))
        rec = RecordingArchived(
            producer_id="bench", call_key=call.call_key, call_version=call.version,
            call_status=call.status, bucket="recordings", object_key=f"r/{i}.wav",
            format="wav", channels=2, sample_rate=8000, started_at=call.started_at,
            duration_ms=60_000, size_bytes=1_920_044, sha256="0" * 64, partial=False)
        out.append(("rec.recordings.v1", codec.encode(rec)))
    return out


def bench_ingest(count: int, db: Path) -> None:
    records = encoded_records(count)
    conn = queries.connect(db)
    wall, cpu0 = time.perf_counter(), cpu()
    for start in range(0, len(records), 5000):
        batch = Batch()
        for offset, (topic, value) in enumerate(records[start:start + 5000], start):
            batch.add(topic, offset % 6, offset, value)
        queries.apply_batch(conn, batch.calls.values(), batch.recordings, batch.audits,
                            batch.offsets)
    wall, used = time.perf_counter() - wall, cpu() - cpu0
    rate = len(records) / used
    # Ceiling: the same rows, already built, into a fresh file.
    rows = []
    for topic, value in records:
        event = codec.decode(value)
        rows.append((topic, call_row(event) if topic == "rec.calls.v1"  # type: ignore[arg-type]
                     else recording_row(event)))  # type: ignore[arg-type]
    ceiling_conn = queries.connect(db.with_name("ceiling.sqlite3"))
    cpu1 = cpu()
    for start in range(0, len(rows), 5000):
        chunk = rows[start:start + 5000]
        queries.apply_batch(ceiling_conn, [r for t, r in chunk if t == "rec.calls.v1"],
                            [r for t, r in chunk if t != "rec.calls.v1"], [], {("t", 0): start})
    ceiling = len(rows) / (cpu() - cpu1)
    cpu2 = cpu()
    for _, value in records:
        codec.decode(value)
    decode = len(records) / (cpu() - cpu2)
    plain = plain_decoder()
    cpu3 = cpu()
    for _, value in records:
        plain(value)
    floor = len(records) / (cpu() - cpu3)
    print(f"ingest: {len(records):,} records in {wall:.1f} s wall, {used:.1f} CPU-s -> "
          f"{rate:,.0f} records per CPU-second ({len(records) / wall:,.0f}/s wall; goal >= "
          f"20,000/s); ceilings: fastavro's decode alone (no models) {floor:,.0f}/CPU-s "
          f"(ratio {rate / floor:.2f}), SQLite alone {ceiling:,.0f}/CPU-s (ratio "
          f"{rate / ceiling:.2f}); the contract's model decode alone {decode:,.0f}/CPU-s "
          f"(ratio {rate / decode:.2f})")


def plain_decoder() -> Callable[[bytes], object]:
    """fastavro alone on the same bytes, times left as longs: what any decode must spend."""
    schemas = {}
    for model in (CallRecord, RecordingArchived):
        schema = codec.load_schema(codec.SCHEMA_DIR / f"{model.__name__}.avsc")
        schemas[codec.header(model)] = fastavro.parse_schema(_plain(schema), named_schemas={})

    def decode(value: bytes) -> object:
        body = io.BytesIO(value)
        body.seek(codec.HEADER_LEN)
        return fastavro.schemaless_reader(body, schemas[value[:codec.HEADER_LEN]], None)
    return decode


def _plain(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _plain(v) for k, v in schema.items() if k != "logicalType"}
    return [_plain(v) for v in schema] if isinstance(schema, list) else schema


def build(calls: int, db: Path) -> None:
    """``calls`` rows spread over 30 days, numbers drawn like a site's: 4-digit extensions
    near, 10-digit numbers far."""
    conn = queries.connect(db)
    rng = random.Random(7)
    legs = '[["NEAR_END","a",0,"rec-1","PCMU",1793491200000000,null,null,false,1,1,0]]'
    span = DAYS * 86400 * 1_000_000
    t0 = int(T0.timestamp() * 1_000_000)
    step = 100_000
    wall = time.perf_counter()
    for start in range(0, calls, step):
        rows = []
        for i in range(start, min(calls, start + step)):
            began = t0 + rng.randrange(span)
            status = rng.choices(["COMPLETED", "ABNORMAL", "ACTIVE"], [95, 4, 1])[0]
            rows.append((
                f"Bench:{i}", 3, began + 60_000_000, status,
                "RECORDER_LOST" if status == "ABNORMAL" else None, None, "Bench",
                f"{rng.randrange(1000, 10000)}", f"SEP{rng.randrange(10**6):06d}",
                f"{rng.randrange(10**9, 10**10)}", "GW-1", None, began,
                began + 60_000_000, 1, f",rec-{rng.randrange(1, 5)},", legs))
        queries.apply_batch(conn, rows, [], [], {("rec.calls.v1", 0): start})
    conn.execute("ANALYZE")
    print(f"built a read model of {calls:,} calls in {time.perf_counter() - wall:.0f} s "
          f"({db.stat().st_size / 2**20:.0f} MiB)")


def bench_search(calls: int, db: Path, samples: int) -> None:
    conn = queries.connect(db)
    rng = random.Random(11)
    timings, lookups, days = [], [], []
    for _ in range(samples):
        day = T0 + timedelta(days=rng.randrange(DAYS))
        party = str(rng.randrange(1000, 10000))[: rng.choice([3, 4])]
        f = CallFilter(started_from=day, started_to=day + timedelta(days=1), party=party)
        t = time.perf_counter()
        queries.search_calls(conn, f, 51, None)
        queries.count_calls(conn, f)
        timings.append(time.perf_counter() - t)
        whole_day = CallFilter(started_from=day, started_to=day + timedelta(days=1))
        t = time.perf_counter()
        queries.search_calls(conn, whole_day, 51, None)
        queries.count_calls(conn, whole_day)
        days.append(time.perf_counter() - t)
        key = f"Bench:{rng.randrange(calls)}"
        t = time.perf_counter()
        queries.get_call(conn, key)
        lookups.append(time.perf_counter() - t)

    def p(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1000

    print(f"search (1 day + party prefix, page 50 + count) over {calls:,} calls: "
          f"p50 {p(timings, 50):.1f} ms, p99 {p(timings, 99):.1f} ms (goal < 50 ms); "
          f"ceiling (key lookup) p99 {p(lookups, 99):.2f} ms; "
          f"one query = {statistics.mean(timings) * 1000:.1f} CPU-ms on one core")
    print(f"search (1 day only, ~{calls // DAYS:,} calls: page 50 + count): "
          f"p50 {p(days, 50):.1f} ms, p99 {p(days, 99):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1_000_000, help="0: ingest only")
    parser.add_argument("--ingest", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_ingest(args.ingest, Path(tmp) / "ingest.sqlite3")
        if not args.calls:
            return
        db = Path(tmp) / "readmodel.sqlite3"
        build(args.calls, db)
        bench_search(args.calls, db, args.samples)


if __name__ == "__main__":
    main()
