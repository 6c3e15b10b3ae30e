"""Benchmark harness (not part of the test run): Iceberg tables against heap tables.

Run:  source scripts/env.sh && cd tests/python &&
      $PG_LAKE_PYTHON -m pytest -q -s extension/bench_iceberg.py
Uses the test fixtures (Postgres, pgduck_server at the pod's memory limit) and a local
warehouse, so object-storage latency does not blur the figures. Each figure is a ratio of
runs made side by side, paired, repeated PG_LAKE_BENCH_REPEAT times (default 3): the
median and the range are printed, since this machine's speed drifts 20-30 % minute to
minute. PG_LAKE_BENCH_ROWS (default 1,000,000) sets the COPY size.
"""

import io
import os
import statistics
import time

ROWS = int(os.environ.get("PG_LAKE_BENCH_ROWS", 1_000_000))
REPEAT = int(os.environ.get("PG_LAKE_BENCH_REPEAT", 3))


def seconds(fn):
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def report(label, ratios, unit="x"):
    print(f"{label:<70} median {statistics.median(ratios):7.2f}{unit}  "
          f"range {min(ratios):.2f}-{max(ratios):.2f}{unit}  ({len(ratios)} paired runs)")


def csv_rows(n):
    buf = io.StringIO()
    for i in range(n):
        buf.write(f"{i},name {i},{i % 1000}.25,2024-01-{1 + i % 28:02d}\n")
    return buf.getvalue()


def test_bench_iceberg(db, duck, localdir):
    data = csv_rows(ROWS)
    cols = "(id bigint, name text, price numeric(10,2), day date)"

    def copy_into(table):
        with db.cursor().copy(f"COPY {table} FROM STDIN WITH (format csv)") as copy:
            copy.write(data)

    print(f"\nrows: {ROWS}")
    ratios = []
    for i in range(REPEAT):
        db.execute(f"CREATE TABLE ice_{i} {cols} USING iceberg WITH (location = '{localdir}/ice_{i}')")
        db.execute(f"CREATE TABLE heap_{i} {cols}")
        ice = seconds(lambda: copy_into(f"ice_{i}"))
        heap = seconds(lambda: copy_into(f"heap_{i}"))
        ratios.append(ice / heap)
        assert db.execute(f"SELECT count(*) FROM ice_{i}").fetchone() == (ROWS,)
    report("COPY FROM STDIN into Iceberg / into heap (time ratio)", ratios)

    ratios = []
    n = 200
    for i in range(REPEAT):
        db.execute(f"CREATE TABLE one_ice_{i} (x int) USING iceberg WITH (location = '{localdir}/one_{i}')")
        db.execute(f"CREATE TABLE one_heap_{i} (x int)")
        ice = seconds(lambda: [db.execute(f"INSERT INTO one_ice_{i} VALUES (%s)", (k,)) for k in range(n)])
        heap = seconds(lambda: [db.execute(f"INSERT INTO one_heap_{i} VALUES (%s)", (k,)) for k in range(n)])
        ratios.append(n / ice)
        print(f"  run {i}: Iceberg {n / ice:.0f} autocommit INSERTs/s, heap {n / heap:.0f}/s")
    report("single-row autocommit INSERTs into Iceberg per second", ratios, unit="/s")

    db.execute(f"CREATE TABLE pruned (x int, pad text) USING iceberg WITH (location = '{localdir}/pruned')")
    for f in range(100):
        db.execute(f"INSERT INTO pruned SELECT g, repeat('x', 20) FROM generate_series({f * 10000}, {f * 10000 + 9999}) g")
    ratios = []
    for _ in range(REPEAT):
        query = "SELECT count(*) FROM pruned WHERE x = 123456"
        db.execute("SET pg_lake_table.enable_data_file_pruning = off")
        off = seconds(lambda: db.execute(query).fetchone())
        db.execute("RESET pg_lake_table.enable_data_file_pruning")
        on = seconds(lambda: db.execute(query).fetchone())
        ratios.append(off / on)
    report("selective WHERE on a 100-file table: pruning off / on (speed-up)", ratios)

    # INSERT ... SELECT from a Parquet foreign table, and COPY of that file: inside DuckDB
    # (pushdown on) against the row path (pushdown off), paired.
    db.execute(f"CREATE TABLE src_heap {cols}")
    copy_into("src_heap")
    db.execute(f"COPY src_heap TO '{localdir}/src.parquet'")
    db.execute(f"CREATE FOREIGN TABLE src {cols} SERVER pg_lake OPTIONS (path '{localdir}/src.parquet')")
    for what, statement in [("INSERT ... SELECT", "INSERT INTO {t} SELECT * FROM src"),
                            ("COPY FROM a Parquet file", f"COPY {{t}} FROM '{localdir}/src.parquet'")]:
        ratios = []
        for i in range(REPEAT):
            tables = {}
            for mode in ("rows", "duckdb"):
                t = f"{mode}_{abs(hash(what)) % 1000}_{i}"
                db.execute(f"CREATE TABLE {t} {cols} USING iceberg WITH (location = '{localdir}/{t}')")
                tables[mode] = t
            db.execute("SET pg_lake_table.enable_full_query_pushdown = off")
            if what.startswith("COPY"):
                # The COPY fast path follows the same switch: a BEFORE trigger keeps the row path.
                db.execute("CREATE OR REPLACE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$")
                db.execute(f"CREATE TRIGGER k BEFORE INSERT ON {tables['rows']} FOR EACH STATEMENT EXECUTE FUNCTION keep()")
            rows_s = seconds(lambda: db.execute(statement.format(t=tables["rows"])))
            db.execute("RESET pg_lake_table.enable_full_query_pushdown")
            duck_s = seconds(lambda: db.execute(statement.format(t=tables["duckdb"])))
            for t in tables.values():
                assert db.execute(f"SELECT count(*) FROM {t}").fetchone() == (ROWS,)
            ratios.append(rows_s / duck_s)
        report(f"{what} into Iceberg: row path / inside DuckDB (speed-up)", ratios)

    # The figure: INSERT ... SELECT into Iceberg (inside DuckDB) against DuckDB's
    # own COPY of the same file to Parquet, on the same pgduck_server, paired.
    ratios = []
    for i in range(REPEAT):
        t = f"floor_{i}"
        db.execute(f"CREATE TABLE {t} {cols} USING iceberg WITH (location = '{localdir}/{t}')")
        ours = seconds(lambda: db.execute(f"INSERT INTO {t} SELECT * FROM src"))
        floor = seconds(lambda: duck.execute(
            f"COPY (SELECT * FROM read_parquet('{localdir}/src.parquet')) TO '{localdir}/{t}.parquet' (FORMAT parquet)"))
        ratios.append(ours / floor)
    report("INSERT ... SELECT into Iceberg / DuckDB's COPY of the file to Parquet (time ratio)", ratios)

    # count(*), sum(x) over an Iceberg table (pushed down whole) against DuckDB's own
    # iceberg_scan of the same metadata, on the same pgduck_server, paired.
    location = db.execute("SELECT metadata_location FROM lake_catalog.iceberg_tables "
                          "WHERE table_name = 'floor_0'").fetchone()[0]
    expected = db.execute("SELECT count(*), sum(id) FROM floor_0").fetchone()
    ratios = []
    for _ in range(REPEAT):
        ours = seconds(lambda: db.execute("SELECT count(*), sum(id) FROM floor_0").fetchone())
        floor = seconds(lambda: duck.execute(
            f"SELECT count(*), sum(id) FROM iceberg_scan('{location}')").fetchone())
        ratios.append(ours / floor)
    assert duck.execute(f"SELECT count(*), sum(id) FROM iceberg_scan('{location}')").fetchone() == expected
    report("count(*), sum(x) over Iceberg / DuckDB's iceberg_scan (time ratio)", ratios)
