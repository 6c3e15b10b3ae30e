"""Benchmark harness (not part of the test run): 10 M-row scan and COPY figures.

Run:  source scripts/env.sh && cd tests/python &&
      $PG_LAKE_PYTHON -m pytest -q -s extension/bench_scan.py
Prints one line per measurement; uses the same Postgres / pgduck_server / moto fixtures
as the tests, with local files so object-storage latency does not blur the engine figures.
"""

import os
import time

ROWS = int(os.environ.get("PG_LAKE_BENCH_ROWS", 10_000_000))


def timed(label, fn):
    start = time.monotonic()
    result = fn()
    elapsed = time.monotonic() - start
    print(f"{label:<58} {elapsed:8.2f} s   {result}")
    return result


def test_bench_scan_and_copy(db, duck, localdir):
    parquet = localdir / "bench.parquet"
    duck.execute(f"COPY (SELECT range AS x FROM range({ROWS})) TO '{parquet}'")
    db.execute(f"CREATE FOREIGN TABLE bench_lake (x bigint) SERVER pg_lake OPTIONS (path '{parquet}')")
    db.execute(f"CREATE TABLE bench_heap AS SELECT x FROM generate_series(0, {ROWS - 1}) x")
    db.execute("VACUUM ANALYZE bench_heap")
    db.execute("SET max_parallel_workers_per_gather = 0")
    print(f"\nrows: {ROWS}")
    want = (ROWS, ROWS * (ROWS - 1) // 2)
    got = timed("foreign table: SELECT count(*), sum(x)",
                lambda: db.execute("SELECT count(*), sum(x) FROM bench_lake").fetchone())
    assert tuple(map(int, got)) == want
    timed("heap table (no parallel workers): SELECT count(*), sum(x)",
          lambda: db.execute("SELECT count(*), sum(x) FROM bench_heap").fetchone())
    timed("DuckDB directly on the file (pgduck_server)",
          lambda: duck.execute(f"SELECT count(*), sum(x) FROM read_parquet('{parquet}')").fetchone())
    timed("COPY heap TO local parquet (pg_lake)",
          lambda: db.execute(f"COPY bench_heap TO '{localdir}/out.parquet'").rowcount)
    timed("COPY heap TO local csv (Postgres)",
          lambda: db.execute(f"COPY bench_heap TO '{localdir}/out.csv' WITH (format csv)").rowcount)
    timed("COPY heap FROM local parquet (pg_lake)",
          lambda: db.execute(f"CREATE TABLE back (x bigint); COPY back FROM '{parquet}'").rowcount)
