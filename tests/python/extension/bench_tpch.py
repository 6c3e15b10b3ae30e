"""Benchmark harness (not part of the test run): the 22 TPC-H queries on
  (a) DuckDB in-process (the duckdb Python module, threads 2 and pgduck_server's memory
      limit) on the Parquet files,
  (b) Postgres over pg_lake foreign tables on the same files, full query pushdown on,
  (d) Postgres heap tables with primary keys, ANALYZEd,
best of 3 runs each (statement_timeout 300 s on Postgres: a timeout is recorded as such
and not retried); then the fixed cost of a pushed-down query: `SELECT x FROM tiny` on a
1-row foreign table against the same on a 1-row heap table.

Run:  source scripts/env.sh && cd tests/python &&
      $PG_LAKE_PYTHON -m pytest -q -s extension/bench_tpch.py
PG_LAKE_TPCH_SF (default 1) sets the scale factor; PG_LAKE_TPCH_DIR keeps the generated
files in a directory of your choice (the postgres OS user must be able to read it) and
reuses them on the next run; PG_LAKE_TPCH_QUERIES (e.g. "1,6,17") runs a subset.
"""

import math
import os
import statistics
import time
from pathlib import Path

import psycopg

import tpch

SF = float(os.environ.get("PG_LAKE_TPCH_SF", "1"))
RUNS = 3
TIMEOUT_S = 300
MEMORY_LIMIT = os.environ.get("PGDUCK_TEST_MEMORY_LIMIT", "819MiB")  # as conftest gives pgduck_server
PUSHDOWN_GUC = "pg_lake_table.enable_full_query_pushdown"
PUSHDOWN_NODE = "Custom Scan (Query Pushdown)"
QUERIES = [int(q) for q in os.environ.get("PG_LAKE_TPCH_QUERIES", "").split(",") if q.strip()] \
    or list(tpch.QUERIES)
TINY_RUNS = 200


def best_of(run, n=RUNS):
    """Best time of n runs of `run` (seconds), or "timeout" if Postgres cancels one."""
    times = []
    for _ in range(n):
        try:
            times.append(tpch.timed(run))
        except psycopg.errors.QueryCanceled:
            return "timeout"
    return min(times)


def fmt(t):
    return f"{t:9.3f}" if isinstance(t, float) else f"{t:>9}"


def pg_session(db, schema, pushdown):
    db.execute(f"SET search_path = {schema}")
    db.execute(f"SET statement_timeout = '{TIMEOUT_S}s'")
    db.execute(f"SET {PUSHDOWN_GUC} = {'on' if pushdown else 'off'}")


def pushed_down(db, sql):
    return any(PUSHDOWN_NODE in r[0] for r in db.execute("EXPLAIN (VERBOSE) " + sql).fetchall())


def test_bench_tpch(db, workdir):
    data = Path(os.environ.get("PG_LAKE_TPCH_DIR") or workdir / f"tpch-sf{SF}")
    print(f"\nTPC-H SF {SF}: data in {data}")
    t = tpch.timed(lambda: tpch.generate(data, SF))
    print(f"generate (dbgen + Parquet + CSV, skipped when present): {t:.1f} s")
    db.execute("SET maintenance_work_mem = '512MB'")
    t = tpch.timed(lambda: tpch.create_heap(db, data, primary_keys=True, analyze=True))
    print(f"heap tables: COPY, primary keys, ANALYZE: {t:.1f} s")
    tpch.create_lake(db, data)

    duck = tpch.duckdb_connect(threads=2, memory_limit=MEMORY_LIMIT)
    for name in tpch.TABLES:
        duck.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{data / (name + '.parquet')}')")

    rows = []
    for q in QUERIES:
        sql = tpch.QUERIES[q]
        a = best_of(lambda: duck.execute(sql).fetchall())
        pg_session(db, tpch.LAKE_SCHEMA, pushdown=True)
        pushed = pushed_down(db, sql)
        b = best_of(lambda: db.execute(sql).fetchall())
        pg_session(db, tpch.HEAP_SCHEMA, pushdown=False)
        d = best_of(lambda: db.execute(sql).fetchall())
        rows.append((q, a, b, d, pushed))
        print(f"  Q{q:<2} a {fmt(a)}  b {fmt(b)}  d {fmt(d)}", flush=True)
    duck.close()

    print(f"\nbest of {RUNS}, seconds; a = DuckDB in-process (2 threads, {MEMORY_LIMIT}), "
          f"b = pg_lake foreign tables (pushdown on), d = heap with primary keys; "
          f"pushed = EXPLAIN of b shows {PUSHDOWN_NODE}")
    print(f"{'query':<6}{'a':>9}{'b':>9}{'d':>9}{'b/a':>8}  pushed")
    ratios = []
    for q, a, b, d, pushed in rows:
        ratio = b / a if isinstance(a, float) and isinstance(b, float) else None
        if ratio:
            ratios.append(ratio)
        print(f"Q{q:<5}{fmt(a)}{fmt(b)}{fmt(d)}{(f'{ratio:8.2f}' if ratio else '       -')}  {'yes' if pushed else 'NO'}")

    def total(i):
        vals = [r[i] for r in rows]
        s = sum(v for v in vals if isinstance(v, float))
        timeouts = sum(1 for v in vals if not isinstance(v, float))
        return f"{s:9.2f}" + (f" (+{timeouts} timeouts)" if timeouts else "")

    print(f"{'total':<6}{total(1)}{total(2)}{total(3)}")
    if ratios:
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"geomean b/a over {len(ratios)} queries: {geo:.2f}")

    fixed_cost(db, data)


def fixed_cost(db, data):
    """Median and spread of TINY_RUNS runs of `SELECT x FROM tiny`, lake vs heap, interleaved
    (so drift of the machine's speed hits both alike)."""
    con = tpch.duckdb_connect()
    con.execute(f"COPY (SELECT 1::INTEGER AS x) TO '{data / 'tiny.parquet'}' (FORMAT parquet)")
    con.close()
    (data / "tiny.parquet").chmod(0o644)
    db.execute(f"CREATE FOREIGN TABLE {tpch.LAKE_SCHEMA}.tiny (x integer) SERVER pg_lake "
               f"OPTIONS (path '{data / 'tiny.parquet'}')")
    db.execute(f"CREATE TABLE {tpch.HEAP_SCHEMA}.tiny AS SELECT 1 AS x")
    db.execute(f"SET {PUSHDOWN_GUC} = on")
    lake_sql = f"SELECT x FROM {tpch.LAKE_SCHEMA}.tiny"
    heap_sql = f"SELECT x FROM {tpch.HEAP_SCHEMA}.tiny"
    pushed = pushed_down(db, lake_sql)
    times = {"lake": [], "heap": []}
    for _ in range(10):  # warm-up: connection to pgduck_server, file metadata, plan caches
        db.execute(lake_sql).fetchall()
        db.execute(heap_sql).fetchall()
    for _ in range(TINY_RUNS):
        for kind, sql in (("lake", lake_sql), ("heap", heap_sql)):
            start = time.perf_counter()
            assert db.execute(sql).fetchall() == [(1,)]
            times[kind].append((time.perf_counter() - start) * 1000)

    def stats(v):
        q = statistics.quantiles(v, n=10)
        return statistics.median(v), q[0], q[-1], min(v), max(v)

    print(f"\nfixed cost, {TINY_RUNS} runs each of SELECT x FROM tiny (1 row), client-side ms "
          f"(lake plan {'shows' if pushed else 'does NOT show'} {PUSHDOWN_NODE}):")
    print(f"{'':<6}{'median':>9}{'p10':>9}{'p90':>9}{'min':>9}{'max':>9}")
    for kind in ("lake", "heap"):
        print(f"{kind:<6}" + "".join(f"{x:9.3f}" for x in stats(times[kind])))
    diff = statistics.median(times["lake"]) - statistics.median(times["heap"])
    paired = [l - h for l, h in zip(times["lake"], times["heap"])]
    q = statistics.quantiles(paired, n=10)
    print(f"lake - heap: difference of medians {diff:.3f} ms; paired differences median "
          f"{statistics.median(paired):.3f} ms, p10 {q[0]:.3f}, p90 {q[-1]:.3f}")
