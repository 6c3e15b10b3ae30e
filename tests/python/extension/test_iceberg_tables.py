"""Iceberg tables Postgres writes: CREATE TABLE ... USING iceberg, INSERT / COPY /
TRUNCATE in real transactions, and the same tables read and appended by PyIceberg and
DuckDB through the one catalog (real Postgres, pgduck_server, rest_catalog, moto S3)."""

import datetime
import decimal
import shutil
import tempfile
import threading
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
from pyiceberg.catalog.rest import RestCatalog

from lake_testing import CatalogServer, rest_catalog_binary


def metadata_location(db, table, namespace="public"):
    row = db.execute(
        "SELECT metadata_location FROM lake_catalog.iceberg_tables "
        "WHERE table_namespace = %s AND table_name = %s", (namespace, table)).fetchone()
    return row[0] if row else None


@pytest.fixture
def catalog(postgres, dbname, workdir, moto):
    """rest_catalog serving this database's catalog (catalog_name = the database, as
    Postgres registers its tables), and a PyIceberg client of it reaching moto."""
    home = Path(tempfile.mkdtemp(prefix="lake-catalog-", dir=workdir))
    url = f"postgres://postgres@127.0.0.1:{postgres['port']}/{dbname}"
    server = CatalogServer(rest_catalog_binary(), url, home, "s3://lake/warehouse",
                           extra=["--catalog-name", dbname],
                           env={"AWS_ACCESS_KEY_ID": moto["key"], "AWS_SECRET_ACCESS_KEY": moto["secret"],
                                "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto["endpoint"],
                                "PG_LAKE_S3_URL_STYLE": "path"})
    client = RestCatalog(dbname, uri=server.url, **{
        "s3.endpoint": moto["endpoint"], "s3.access-key-id": moto["key"],
        "s3.secret-access-key": moto["secret"], "s3.region": "us-east-1",
        "s3.force-virtual-addressing": "false"})
    yield client
    server.stop()
    shutil.rmtree(home, ignore_errors=True)


ROWS = [
    (1, "one", decimal.Decimal("1.50"), datetime.date(2024, 2, 29),
     datetime.datetime(2024, 1, 1, 12, 0, tzinfo=datetime.timezone.utc), True, ["a", "b"], b"\x00\x01"),
    (2, "two, \"quoted\"\nline", decimal.Decimal("-0.01"), datetime.date(1, 1, 1),
     datetime.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.timezone.utc), False, [], b""),
    (3, None, None, None, None, None, None, None),
]


def create_typed(db, name="t", using="iceberg"):
    db.execute(f"""CREATE TABLE {name} (id bigint NOT NULL, name text, price numeric(10,2), day date,
                   at timestamptz, flag boolean, tags text[], raw bytea) USING {using}""")


def test_create_insert_and_read_back_every_value(db, dbname):
    create_typed(db)
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    returned = db.execute("INSERT INTO t VALUES (%s,%s,%s,%s,%s,%s,%s,%s), (%s,%s,%s,%s,%s,%s,%s,%s), "
                          "(%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                          [v for r in ROWS for v in r]).fetchall()
    assert returned == [(1,), (2,), (3,)]
    got = db.execute("SELECT * FROM t ORDER BY id").fetchall()
    assert got == ROWS
    # Registered under catalog_name = the database, namespace = the schema.
    row = db.execute("SELECT catalog_name, table_namespace, table_name, metadata_location "
                     "FROM lake_catalog.iceberg_tables").fetchone()
    assert row[:3] == (dbname, "public", "t")
    assert row[3].startswith(f"s3://lake/warehouse/{dbname}/public/t/") and row[3].endswith(".metadata.json")
    # Under the hood, as in the original: a foreign table on SERVER pg_lake_iceberg.
    assert db.execute("SELECT srvname FROM pg_foreign_table ft JOIN pg_foreign_server s ON s.oid = ft.ftserver "
                      "WHERE ft.ftrelid = 't'::regclass").fetchone() == ("pg_lake_iceberg",)
    # Filters and projections still go to DuckDB, and EXPLAIN shows the files read.
    assert db.execute("SELECT name FROM t WHERE id = 1").fetchall() == [("one",)]
    plan = "\n".join(r[0] for r in db.execute("EXPLAIN (VERBOSE) SELECT id FROM t WHERE id > 1"))
    assert "Data Files Scanned: 1" in plan, plan


def test_alias_default_access_method_and_copy(db, s3url):
    db.execute("CREATE TABLE a (x int) USING pg_lake_iceberg")
    db.execute("SET default_table_access_method = 'iceberg'")
    db.execute("CREATE TABLE b (x int)")
    db.execute("CREATE TEMP TABLE scratch (x int)")  # temporary tables stay heap tables
    assert db.execute("SELECT relkind FROM pg_class WHERE relname IN ('a', 'b') ORDER BY relname").fetchall() \
        == [("f",), ("f",)]
    assert db.execute("SELECT relkind FROM pg_class WHERE relname = 'scratch'").fetchone() == ("r",)
    db.execute("RESET default_table_access_method")
    with db.cursor().copy("COPY b FROM STDIN") as copy:
        for i in range(1000):
            copy.write_row((i,))
    db.execute("INSERT INTO a SELECT x * 2 FROM b WHERE x < 10")
    assert db.execute("SELECT count(*), sum(x) FROM b").fetchone() == (1000, 499500)
    assert db.execute("SELECT sum(x) FROM a").fetchone() == (90,)
    # COPY FROM a lake file into an Iceberg table, and CREATE ... USING iceberg WITH (load_from).
    db.execute(f"COPY (SELECT g AS x FROM generate_series(1, 5) g) TO '{s3url}/five.parquet'")
    db.execute(f"COPY a FROM '{s3url}/five.parquet'")
    assert db.execute("SELECT count(*), sum(x) FROM a").fetchone() == (15, 105)
    db.execute(f"CREATE TABLE loaded () USING iceberg WITH (load_from = '{s3url}/five.parquet')")
    assert db.execute("SELECT sum(x) FROM loaded").fetchone() == (15,)
    assert db.execute("SELECT relkind FROM pg_class WHERE relname = 'loaded'").fetchone() == ("f",)


def test_rollback_and_savepoints_leave_no_trace(connect):
    db, other = connect(), connect()
    db.execute("CREATE TABLE t (x int) USING iceberg")
    db.execute("INSERT INTO t VALUES (1)")
    committed = metadata_location(db, "t")
    db.execute("BEGIN")
    db.execute("INSERT INTO t VALUES (2)")
    assert db.execute("SELECT array_agg(x ORDER BY x) FROM t").fetchone() == ([1, 2],), \
        "a transaction reads its own writes"
    assert other.execute("SELECT array_agg(x ORDER BY x) FROM t").fetchone() == ([1],), \
        "other sessions see only committed snapshots"
    db.execute("SAVEPOINT s")
    db.execute("INSERT INTO t VALUES (3)")
    db.execute("ROLLBACK TO SAVEPOINT s")
    db.execute("INSERT INTO t VALUES (4)")
    assert db.execute("SELECT array_agg(x ORDER BY x) FROM t").fetchone() == ([1, 2, 4],)
    db.execute("ROLLBACK")
    assert db.execute("SELECT array_agg(x ORDER BY x) FROM t").fetchone() == ([1],)
    assert metadata_location(db, "t") == committed, "ROLLBACK leaves the catalog row alone"

    with pytest.raises(psycopg.errors.NotNullViolation):
        db.execute("CREATE TABLE n (x int NOT NULL) USING iceberg")
        db.execute("INSERT INTO n VALUES (1), (NULL)")
    db.execute("BEGIN")
    db.execute("CREATE TABLE gone (x int) USING iceberg")
    db.execute("INSERT INTO gone VALUES (1)")
    db.execute("ROLLBACK")
    assert metadata_location(db, "gone") is None


def test_several_statements_and_tables_commit_atomically(connect, duck):
    db, watcher = connect(), connect()
    db.execute("CREATE TABLE a (x int) USING iceberg")
    db.execute("CREATE TABLE b (x int) USING iceberg")
    db.execute("CREATE TABLE h (x int)")
    before = (metadata_location(db, "a"), metadata_location(db, "b"))
    db.execute("BEGIN")
    for i in range(5):
        db.execute("INSERT INTO a VALUES (%s)", (i,))
    db.execute("INSERT INTO b VALUES (1)")
    db.execute("INSERT INTO h VALUES (1)")
    assert (metadata_location(watcher, "a"), metadata_location(watcher, "b")) == before
    db.execute("COMMIT")
    after = (metadata_location(watcher, "a"), metadata_location(watcher, "b"))
    assert after[0] != before[0] and after[1] != before[1]
    assert watcher.execute("SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b), "
                           "(SELECT count(*) FROM h)").fetchone() == (5, 1, 1)
    # Five INSERTs in one transaction: one snapshot (as DuckDB's Iceberg reader lists them).
    assert duck.execute(f"SELECT count(*) FROM iceberg_snapshots('{after[0]}')").fetchone() == (1,)


def test_repeatable_read_sees_one_snapshot(connect):
    db, writer = connect(), connect()
    db.execute("CREATE TABLE t (x int) USING iceberg")
    db.execute("INSERT INTO t VALUES (1)")
    db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    assert db.execute("SELECT count(*) FROM t").fetchone() == (1,)
    writer.execute("INSERT INTO t VALUES (2)")
    assert db.execute("SELECT count(*) FROM t").fetchone() == (1,)
    db.execute("COMMIT")
    assert db.execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_concurrent_appends_both_land(connect):
    first, second = connect(), connect()
    first.execute("CREATE TABLE t (x int) USING iceberg")
    first.execute("BEGIN")
    second.execute("BEGIN")
    first.execute("INSERT INTO t SELECT generate_series(1, 100)")
    second.execute("INSERT INTO t SELECT generate_series(101, 150)")
    done = threading.Event()
    errors = []

    def commit_second():
        try:
            second.execute("COMMIT")
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            done.set()

    first.execute("COMMIT")
    threading.Thread(target=commit_second).start()
    assert done.wait(60)
    assert errors == []
    assert first.execute("SELECT count(*), sum(x) FROM t").fetchone() == (150, 150 * 151 // 2)


def test_truncate_drop_rename(db):
    db.execute("CREATE TABLE t (x int) USING iceberg")
    db.execute("INSERT INTO t VALUES (1), (2)")
    db.execute("BEGIN")
    db.execute("INSERT INTO t VALUES (3)")
    db.execute("TRUNCATE t")
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    db.execute("INSERT INTO t VALUES (4)")
    db.execute("COMMIT")
    assert db.execute("SELECT array_agg(x) FROM t").fetchone() == ([4],)

    db.execute("ALTER TABLE t RENAME TO u")
    assert metadata_location(db, "t") is None and metadata_location(db, "u") is not None
    db.execute("CREATE SCHEMA other")
    db.execute("ALTER TABLE u SET SCHEMA other")
    assert metadata_location(db, "u", "other") is not None
    assert db.execute("SELECT x FROM other.u").fetchall() == [(4,)]
    db.execute("DROP TABLE other.u")
    assert metadata_location(db, "u", "other") is None


def test_unsupported_things_are_clear_errors(db):
    with pytest.raises(psycopg.errors.FeatureNotSupported, match='column "d" has type point'):
        db.execute("CREATE TABLE t (d point) USING iceberg")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="temporary"):
        db.execute("CREATE TEMP TABLE t (x int) USING iceberg")
    with pytest.raises(psycopg.errors.FdwInvalidOptionName, match="format_version"):
        db.execute("CREATE TABLE t (x int) USING iceberg WITH (format_version = '2')")
    db.execute("CREATE TABLE t (x int, n numeric) USING iceberg")
    assert db.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                      "WHERE attrelid = 't'::regclass AND attname = 'n'").fetchone() == ("double precision",)
    db.execute("INSERT INTO t VALUES (1, 1.5)")
    assert db.execute("UPDATE t SET x = x + 1 RETURNING x, n").fetchall() == [(2, 1.5)]
    db.execute("INSERT INTO t VALUES (10, 2.5)")
    assert db.execute("DELETE FROM t WHERE x = 10 RETURNING *").fetchall() == [(10, 2.5)]
    assert db.execute("SELECT x FROM t").fetchall() == [(2,)]
    for sql, why in [("SELECT * FROM t FOR UPDATE", "FOR UPDATE"), ("SELECT ctid FROM t", "ctid"),
                     ("INSERT INTO t VALUES (1, 1) ON CONFLICT DO NOTHING", "ON CONFLICT"),
                     ("MERGE INTO t USING (SELECT 1 AS x) s ON t.x = s.x WHEN MATCHED THEN DELETE", "MERGE")]:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match=why):
            db.execute(sql)
    db.execute("CREATE TABLE other_ice (x int) USING iceberg")
    db.execute("INSERT INTO other_ice VALUES (2)")
    db.execute("UPDATE t SET n = 3 FROM other_ice o WHERE t.x = o.x")  # implicit row marks still work
    assert db.execute("SELECT n FROM t").fetchall() == [(3.0,)]
    db.execute("UPDATE t SET n = 1.5")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match='"y" with DEFAULT random.*volatile'):
        db.execute("ALTER TABLE t ADD COLUMN y float8 DEFAULT random()")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="volatile"):
        db.execute("ALTER TABLE t ADD COLUMN y serial")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="scalar types"):
        db.execute("ALTER TABLE t ADD COLUMN y int[] DEFAULT '{1}'")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="outside what Iceberg can store"):
        db.execute("ALTER TABLE t ADD COLUMN y date DEFAULT 'infinity'")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="NOT NULL"):
        db.execute("ALTER TABLE t ADD COLUMN y int NOT NULL DEFAULT 5")
    assert db.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass "
                      "AND attname = 'y' AND NOT attisdropped").fetchone() == (0,)
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="OPTIONS"):
        db.execute("ALTER FOREIGN TABLE t OPTIONS (ADD location 's3://lake/elsewhere')")
    db.execute("CREATE TABLE d (day date, at timestamp) USING iceberg")
    with pytest.raises(psycopg.errors.DatetimeFieldOverflow, match='column "day"'):
        db.execute("INSERT INTO d VALUES ('infinity', now())")
    with pytest.raises(psycopg.errors.DatetimeFieldOverflow, match='column "at"'):
        db.execute("INSERT INTO d VALUES (now(), '-infinity')")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="PREPARE"):
        db.execute("BEGIN")
        db.execute("INSERT INTO t VALUES (2, 2)")
        db.execute("PREPARE TRANSACTION 'p'")
    db.rollback() if not db.autocommit else db.execute("ROLLBACK")
    assert db.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_a_user_with_table_privileges_writes_without_catalog_privileges(db, connect):
    db.execute("CREATE TABLE t (x int) USING iceberg")
    db.execute("CREATE ROLE app LOGIN")
    try:
        db.execute("GRANT SELECT, INSERT ON t TO app")
        app = connect(user="app")
        app.execute("INSERT INTO t VALUES (7)")
        assert app.execute("SELECT x FROM t").fetchall() == [(7,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("UPDATE lake_catalog.iceberg_tables SET metadata_location = 'x'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("TRUNCATE t")
    finally:
        db.execute("DROP OWNED BY app")
        db.execute("DROP ROLE app")


def test_pyiceberg_and_duckdb_read_what_postgres_writes_and_postgres_reads_their_appends(db, catalog, duck):
    create_typed(db)
    db.execute("INSERT INTO t (id, name, price, day, at, flag, tags, raw) VALUES "
               "(1, 'one', 1.50, '2024-02-29', '2024-01-01 12:00+00', true, '{a,b}', '\\x0001'), "
               "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL)")
    table = catalog.load_table("public.t")
    arrow = table.scan().to_arrow().sort_by("id")
    assert arrow.column("id").to_pylist() == [1, 2]
    assert arrow.column("name").to_pylist() == ["one", None]
    assert arrow.column("price").to_pylist() == [decimal.Decimal("1.50"), None]
    assert arrow.column("day").to_pylist() == [datetime.date(2024, 2, 29), None]
    assert arrow.column("tags").to_pylist() == [["a", "b"], None]
    assert arrow.column("raw").to_pylist() == [b"\x00\x01", None]
    assert table.schema().find_field("id").required, "NOT NULL columns are required fields"

    # DuckDB's own Iceberg reader on the committed metadata file.
    location = metadata_location(db, "t")
    assert duck.execute(f"SELECT count(*), sum(id) FROM iceberg_scan('{location}')").fetchone() == (2, 3)

    # PyIceberg appends to the table Postgres created; the next Postgres statement sees it.
    table.append(pa.Table.from_pylist(
        [{"id": 10, "name": "from pyiceberg", "price": decimal.Decimal("9.99"), "day": None, "at": None,
          "flag": None, "tags": None, "raw": None}], schema=table.schema().as_arrow()))
    assert db.execute("SELECT id, name, price FROM t WHERE id = 10").fetchall() == \
        [(10, "from pyiceberg", decimal.Decimal("9.99"))]
    # ... and Postgres appends on top of PyIceberg's commit: nothing is lost on either side.
    db.execute("INSERT INTO t (id, name) VALUES (11, 'from postgres')")
    assert sorted(catalog.load_table("public.t").scan().to_arrow().column("id").to_pylist()) == [1, 2, 10, 11]


def test_a_rest_commit_racing_a_postgres_transaction_loses_nothing(db, catalog):
    db.execute("CREATE TABLE r (id bigint) USING iceberg")
    db.execute("INSERT INTO r VALUES (1)")
    table = catalog.load_table("public.r")
    db.execute("BEGIN")
    db.execute("INSERT INTO r VALUES (2)")
    table.append(pa.table({"id": pa.array([3], pa.int64())}))  # commits while Postgres' transaction is open
    db.execute("COMMIT")  # rebases its append on PyIceberg's snapshot
    assert db.execute("SELECT array_agg(id ORDER BY id) FROM r").fetchone() == ([1, 2, 3],)
    assert sorted(catalog.load_table("public.r").scan().to_arrow().column("id").to_pylist()) == [1, 2, 3]


def test_local_location(db, localdir):
    db.execute(f"CREATE TABLE l (x int) USING iceberg WITH (location = '{localdir}/l')")
    db.execute("INSERT INTO l VALUES (1), (2)")
    assert db.execute("SELECT sum(x) FROM l").fetchone() == (3,)
    location = metadata_location(db, "l")
    assert location.startswith(f"{localdir}/l/metadata/")
    assert list((localdir / "l" / "data").glob("*.parquet")), "the data file is in the table's location"


def explain(db, sql):
    return "\n".join(r[0] for r in db.execute(f"EXPLAIN (VERBOSE) {sql}"))


def test_files_outside_the_where_clause_are_skipped(db):
    db.execute("CREATE TABLE p (x int, day date, at timestamptz, k text) USING iceberg")
    for i in range(10):  # ten statements: ten data files, x in [10 i, 10 i + 9]
        db.execute(f"""INSERT INTO p SELECT g, DATE '2024-01-01' + {i}, TIMESTAMPTZ '2024-01-01 00:00+00' + {i} * interval '1 day',
                      'key' || {i} FROM generate_series({10 * i}, {10 * i + 9}) g""")
    db.execute("INSERT INTO p VALUES (NULL, NULL, NULL, NULL)")  # a file of NULLs only
    cases = [
        ("x = 55", 1), ("x < 10", 1), ("x <= 10", 2), ("x > 89", 1), ("x >= 90", 1), ("x >= 89", 2), ("55 = x", 1),
        ("x = 55::bigint", 1), ("day = DATE '2024-01-03'", 1), ("day > DATE '2024-01-08'", 2),
        ("at >= TIMESTAMPTZ '2024-01-10 00:00+00'", 1), ("k = 'key3'", 1),
        ("k < 'key3'", 11), ("x + 0 = 55", 11), ("x IS NULL", 11),
    ]
    for where, scanned in cases:
        plan = explain(db, f"SELECT * FROM p WHERE {where}")
        assert f"Data Files Scanned: {scanned}" in plan, (where, plan)
        assert f"Data Files Skipped: {11 - scanned}" in plan, (where, plan)
        pruned = db.execute(f"SELECT * FROM p WHERE {where} ORDER BY x").fetchall()
        db.execute("SET pg_lake_table.enable_data_file_pruning = off")
        assert db.execute(f"SELECT * FROM p WHERE {where} ORDER BY x").fetchall() == pruned, where
        db.execute("RESET pg_lake_table.enable_data_file_pruning")
    assert "Data Files Skipped: 0" in (
        db.execute("SET pg_lake_table.enable_data_file_pruning = off") and explain(db, "SELECT * FROM p WHERE x = 55"))
    db.execute("RESET pg_lake_table.enable_data_file_pruning")
    # A transaction's own files are pruned by the same bounds.
    db.execute("BEGIN")
    db.execute("INSERT INTO p VALUES (1000, NULL, NULL, 'mine')")
    assert "Data Files Skipped: 11" in explain(db, "SELECT * FROM p WHERE x = 1000")
    assert db.execute("SELECT k FROM p WHERE x = 1000").fetchall() == [("mine",)]
    db.execute("ROLLBACK")


def test_update_and_delete_rewrite_the_files_they_change(connect, catalog):
    db, other = connect(), connect()
    db.execute("CREATE TABLE u (id int, v text) USING iceberg")
    db.execute("INSERT INTO u SELECT g, 'a' || g FROM generate_series(1, 100) g")
    db.execute("INSERT INTO u SELECT g, 'b' || g FROM generate_series(101, 200) g")
    db.execute("DELETE FROM u WHERE id % 10 = 0")
    assert db.execute("SELECT count(*), sum(id) FROM u").fetchone() == (180, 20100 - 2100)
    db.execute("UPDATE u SET v = 'changed' WHERE id BETWEEN 5 AND 7")
    assert db.execute("SELECT id, v FROM u WHERE id BETWEEN 4 AND 8 ORDER BY id").fetchall() == \
        [(4, "a4"), (5, "changed"), (6, "changed"), (7, "changed"), (8, "a8")]
    # A DELETE of every row of a file drops it (one file left: the second INSERT's).
    db.execute("DELETE FROM u WHERE id <= 100")
    assert db.execute("SELECT count(*) FROM u").fetchone() == (90,)
    plan = explain(db, "SELECT * FROM u")
    assert "Data Files Scanned: 1" in plan, plan
    # Joins, subqueries and modifying CTEs.
    db.execute("CREATE TABLE gone (id int)")
    db.execute("INSERT INTO gone VALUES (101), (102)")
    db.execute("DELETE FROM u USING gone WHERE u.id = gone.id")
    db.execute("UPDATE u SET v = 'sub' WHERE id IN (SELECT id + 2 FROM gone)")
    db.execute("WITH d AS (DELETE FROM u WHERE id = 199 RETURNING id) INSERT INTO gone SELECT id FROM d")
    assert db.execute("SELECT count(*) FROM u").fetchone() == (87,)
    assert db.execute("SELECT max(id) FROM gone").fetchone() == (199,)
    assert db.execute("SELECT v FROM u WHERE id = 103").fetchone() == ("sub",)

    # In a transaction: own writes, savepoints, rollback.
    db.execute("BEGIN")
    db.execute("DELETE FROM u WHERE id > 150")
    assert other.execute("SELECT count(*) FROM u").fetchone() == (87,)
    db.execute("SAVEPOINT s")
    db.execute("DELETE FROM u")
    assert db.execute("SELECT count(*) FROM u").fetchone() == (0,)
    db.execute("ROLLBACK TO SAVEPOINT s")
    count = db.execute("SELECT count(*) FROM u").fetchone()[0]
    db.execute("COMMIT")
    assert other.execute("SELECT count(*) FROM u").fetchone() == (count,)
    assert sorted(catalog.load_table("public.u").scan().to_arrow().column("id").to_pylist()) == \
        [r[0] for r in db.execute("SELECT id FROM u ORDER BY id")]


def files_of(db, table):
    """(content, record_count) of each live file of `table`, sorted."""
    return sorted(db.execute("SELECT content, record_count FROM lake_iceberg.files(%s)",
                             (metadata_location(db, table),)).fetchall())


def test_deletes_are_position_delete_files_every_engine_applies(connect, catalog, duck):
    db, other = connect(), connect()
    db.execute("CREATE TABLE pd (id int, v text) USING iceberg")
    db.execute("INSERT INTO pd SELECT g, 'a' || g FROM generate_series(1, 100) g")
    db.execute("INSERT INTO pd SELECT g, 'b' || g FROM generate_series(101, 200) g")
    expected = {i: ("a" if i <= 100 else "b") + str(i) for i in range(1, 201)}

    def check(where):
        rows = sorted(expected.items())
        assert db.execute("SELECT id, v FROM pd ORDER BY id").fetchall() == rows, where
        assert other.execute("SELECT count(*), sum(id) FROM pd").fetchone() == \
            (len(rows), sum(expected)), where
        db.execute("SET pg_lake_table.enable_full_query_pushdown = off")
        assert db.execute("SELECT id, v FROM pd WHERE id % 3 = 0 ORDER BY id").fetchall() == \
            [r for r in rows if r[0] % 3 == 0], where
        db.execute("RESET pg_lake_table.enable_full_query_pushdown")
        got = catalog.load_table("public.pd").scan().to_arrow().sort_by("id")
        assert list(zip(got.column("id").to_pylist(), got.column("v").to_pylist())) == rows, where
        duck_rows = duck.execute(f"SELECT id, v FROM iceberg_scan('{metadata_location(db, 'pd')}') "
                                 "ORDER BY id").fetchall()
        assert duck_rows == rows, where

    # A few rows of a file: one position delete file (merge-on-read), the data stays.
    assert db.execute("DELETE FROM pd WHERE id IN (3, 50) RETURNING id").fetchall() in ([(3,), (50,)], [(50,), (3,)])
    del expected[3], expected[50]
    assert files_of(db, "pd") == [("DATA", 100), ("DATA", 100), ("POSITION_DELETES", 2)]
    snaps = db.execute("SELECT operation FROM lake_iceberg.snapshots(%s) ORDER BY sequence_number",
                       (metadata_location(db, "pd"),)).fetchall()
    assert snaps[-1] == ("delete",)
    check("after a DELETE of two rows")

    # An UPDATE deletes the old row by position and writes the new one.
    db.execute("UPDATE pd SET v = 'changed' WHERE id IN (10, 150)")
    expected[10] = expected[150] = "changed"
    assert files_of(db, "pd") == [("DATA", 2), ("DATA", 100), ("DATA", 100), ("POSITION_DELETES", 1),
                                  ("POSITION_DELETES", 1), ("POSITION_DELETES", 2)]
    check("after an UPDATE")
    assert db.execute("SELECT lake_iceberg.table_size('pd')").fetchone()[0] == db.execute(
        "SELECT sum(file_size_in_bytes) FROM lake_iceberg.files(%s)", (metadata_location(db, "pd"),)).fetchone()[0]

    # Own deletes inside a transaction; a rolled-back savepoint takes its deletes back.
    db.execute("BEGIN")
    db.execute("DELETE FROM pd WHERE id = 120")
    db.execute("SAVEPOINT s")
    db.execute("DELETE FROM pd WHERE id = 121")
    assert db.execute("SELECT count(*) FROM pd WHERE id BETWEEN 120 AND 121").fetchone() == (0,)
    db.execute("ROLLBACK TO SAVEPOINT s")
    assert db.execute("SELECT id FROM pd WHERE id BETWEEN 120 AND 121").fetchall() == [(121,)]
    assert other.execute("SELECT count(*) FROM pd WHERE id = 120").fetchone() == (1,)
    db.execute("COMMIT")
    del expected[120]
    check("after a transaction with a savepoint")

    # Past a fifth of a file deleted, the file is rewritten without the deleted rows and
    # its delete files go with it.
    before = metadata_location(db, "pd")
    db.execute("DELETE FROM pd WHERE id BETWEEN 20 AND 40")
    for i in range(20, 41):
        expected.pop(i, None)
    # File one: 100 rows less 3, 10, 50 and 20..40 (24); file two keeps its two one-row
    # delete files (150 by the UPDATE, 120 by the transaction).
    assert files_of(db, "pd") == [("DATA", 2), ("DATA", 76), ("DATA", 100), ("POSITION_DELETES", 1),
                                  ("POSITION_DELETES", 1)]
    check("after a rewrite")
    # The earlier snapshot still reads as it was, deletes applied.
    snapshot_id = db.execute("SELECT snapshot_id FROM lake_iceberg.snapshots(%s) ORDER BY sequence_number DESC "
                             "LIMIT 1", (before,)).fetchone()[0]
    db.execute(f"SET pg_lake_iceberg.as_of = '{snapshot_id}'")
    assert db.execute("SELECT count(*) FROM pd WHERE id BETWEEN 20 AND 40").fetchone() == (21,)
    assert db.execute("SELECT count(*) FROM pd WHERE id <= 100").fetchone() == (98,)  # 3, 50 gone
    assert db.execute("SELECT v FROM pd WHERE id = 10").fetchall() == [("changed",)]
    db.execute("RESET pg_lake_iceberg.as_of")

    # Rows inserted and deleted in one transaction: the small-file merge at commit keeps
    # the deletes of the file it leaves alone.
    db.execute("BEGIN")
    db.execute("INSERT INTO pd SELECT g, 'c' || g FROM generate_series(1000, 1099) g")
    db.execute("INSERT INTO pd VALUES (2000, 'c2000')")
    db.execute("DELETE FROM pd WHERE id = 1005")
    db.execute("COMMIT")
    expected.update({i: f"c{i}" for i in range(1000, 1100) if i != 1005})
    expected[2000] = "c2000"
    check("after deletes of the transaction's own rows")


def test_concurrent_updates_of_one_row_never_both_land(connect):
    first, second = connect(), connect()
    first.execute("CREATE TABLE cu (id int, n int) USING iceberg")
    first.execute("INSERT INTO cu SELECT g, 0 FROM generate_series(1, 100) g")
    first.execute("BEGIN")
    second.execute("BEGIN")
    first.execute("UPDATE cu SET n = n + 1 WHERE id = 7")
    second.execute("UPDATE cu SET n = n + 10 WHERE id = 7")
    first.execute("COMMIT")
    with pytest.raises(psycopg.errors.SerializationFailure, match="deleted rows of data file"):
        second.execute("COMMIT")
    assert first.execute("SELECT n FROM cu WHERE id = 7").fetchall() == [(1,)], "no lost update, no twin row"
    # A rewrite racing a position delete of the same file conflicts too.
    first.execute("BEGIN")
    second.execute("BEGIN")
    first.execute("DELETE FROM cu WHERE id = 8")
    second.execute("DELETE FROM cu WHERE id > 50")
    first.execute("COMMIT")
    with pytest.raises(psycopg.errors.SerializationFailure):
        second.execute("COMMIT")
    assert first.execute("SELECT count(*) FROM cu").fetchone() == (99,)


def test_rewritten_files_keep_values_of_renamed_columns(db):
    db.execute("CREATE TABLE rn (id int, v text) USING iceberg")
    db.execute("INSERT INTO rn SELECT g, 'v' || g FROM generate_series(1, 10) g")
    db.execute("ALTER TABLE rn RENAME COLUMN v TO w")
    db.execute("DELETE FROM rn WHERE id <= 5")  # half the file: rewritten
    assert files_of(db, "rn") == [("DATA", 5)]
    assert db.execute("SELECT id, w FROM rn ORDER BY id").fetchall() == [(i, f"v{i}") for i in range(6, 11)]


def test_conflicting_deletes_fail_with_a_serialization_error(connect):
    first, second = connect(), connect()
    first.execute("CREATE TABLE c (id int) USING iceberg")
    first.execute("INSERT INTO c SELECT generate_series(1, 10)")
    first.execute("BEGIN")
    second.execute("BEGIN")
    first.execute("DELETE FROM c WHERE id = 1")
    second.execute("DELETE FROM c WHERE id = 2")
    first.execute("COMMIT")
    with pytest.raises(psycopg.errors.SerializationFailure):
        second.execute("COMMIT")
    assert first.execute("SELECT count(*) FROM c").fetchone() == (9,), "no lost update, no lost delete"


def test_a_table_pyiceberg_created_is_imported_read_and_written_by_postgres(db, catalog):
    from pyiceberg.schema import Schema
    from pyiceberg.types import LongType, NestedField, StringType, DoubleType

    catalog.create_namespace("sales")
    orders = catalog.create_table("sales.orders", schema=Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "customer", StringType(), required=False),
        NestedField(3, "amount", DoubleType(), required=False)))
    orders.append(pa.Table.from_pylist(
        [{"id": 1, "customer": "ada", "amount": 10.5}, {"id": 2, "customer": "bob", "amount": 3.0}],
        schema=orders.schema().as_arrow()))

    # One statement makes it a Postgres table (columns from its Iceberg schema).
    db.execute("IMPORT FOREIGN SCHEMA sales FROM SERVER pg_lake_iceberg INTO public")
    assert db.execute("SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
                      "WHERE attrelid = 'orders'::regclass AND attnum > 0 ORDER BY attnum").fetchall() == \
        [("bigint", True), ("text", False), ("double precision", False)]
    assert db.execute("SELECT id, customer, amount FROM orders ORDER BY id").fetchall() == \
        [(1, "ada", 10.5), (2, "bob", 3.0)]

    db.execute("INSERT INTO orders VALUES (3, 'cy', 7.25)")
    db.execute("UPDATE orders SET amount = amount * 2 WHERE customer = 'ada'")
    db.execute("DELETE FROM orders WHERE id = 2")
    got = catalog.load_table("sales.orders").scan().to_arrow().sort_by("id").to_pylist()
    assert got == [{"id": 1, "customer": "ada", "amount": 21.0}, {"id": 3, "customer": "cy", "amount": 7.25}]

    # Postgres' names may differ from the catalog's; DROP only detaches an imported table.
    db.execute("ALTER TABLE orders RENAME TO my_orders")
    assert db.execute("SELECT count(*) FROM my_orders").fetchone() == (2,)
    db.execute("DROP TABLE my_orders")
    assert metadata_location(db, "orders", "sales") is not None
    db.execute("CREATE SCHEMA s2")
    db.execute("IMPORT FOREIGN SCHEMA sales LIMIT TO (orders) FROM SERVER pg_lake_iceberg INTO s2")
    assert db.execute("SELECT count(*) FROM s2.orders").fetchone() == (2,)
    db.execute("CREATE SCHEMA sales")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="IMPORT FOREIGN SCHEMA"):
        db.execute("CREATE TABLE sales.orders (id bigint) USING iceberg")
    with pytest.raises(psycopg.errors.UndefinedColumn, match='"nope"'):
        db.execute("CREATE FOREIGN TABLE bad (nope int) SERVER pg_lake_iceberg "
                   "OPTIONS (catalog_namespace 'sales', catalog_table_name 'orders')")


def test_many_small_inserts_in_one_transaction_make_one_file(db):
    db.execute("CREATE TABLE m (x int, k text) USING iceberg")
    db.execute("BEGIN")
    for i in range(30):
        db.execute("INSERT INTO m VALUES (%s, %s)", (i, f"k{i}"))
    assert "Data Files Scanned: 30" in explain(db, "SELECT * FROM m"), "before commit: one file per statement"
    db.execute("COMMIT")
    assert "Data Files Scanned: 1" in explain(db, "SELECT * FROM m")
    assert db.execute("SELECT count(*), sum(x), min(k), max(k) FROM m").fetchone() == (30, 435, "k0", "k9")
    # The merged file keeps statistics: pruning still works on it.
    db.execute("INSERT INTO m VALUES (1000, 'far')")
    assert "Data Files Skipped: 1" in explain(db, "SELECT * FROM m WHERE x = 1000")


def test_prepared_statements_and_cached_plans_see_each_new_snapshot(db):
    db.execute("CREATE TABLE ps (x int) USING iceberg")
    db.execute("PREPARE q(int) AS SELECT count(*) FROM ps WHERE x >= $1")
    db.execute("PREPARE c AS SELECT count(*) FROM ps WHERE x = 3")
    for i in range(8):  # past the custom-plan phase: the generic plan is reused (and copied)
        db.execute("INSERT INTO ps VALUES (%s)", (i,))
        assert db.execute(f"EXECUTE q(0)").fetchone() == (i + 1,)
        assert db.execute("EXECUTE c").fetchone() == ((1,) if i >= 3 else (0,))


def test_metadata_functions(db, connect):
    db.execute("CREATE TABLE f (x int) USING iceberg")
    db.execute("INSERT INTO f VALUES (1), (2)")
    db.execute("INSERT INTO f VALUES (3)")
    location = metadata_location(db, "f")
    meta = db.execute("SELECT lake_iceberg.metadata(%s)", (location,)).fetchone()[0]
    assert meta["format-version"] == 2 and len(meta["snapshots"]) == 2
    files = db.execute("SELECT content, file_format, record_count, file_size_in_bytes > 0 "
                       "FROM lake_iceberg.files(%s) ORDER BY record_count", (location,)).fetchall()
    assert files == [("DATA", "PARQUET", 1, True), ("DATA", "PARQUET", 2, True)]
    snaps = db.execute("SELECT sequence_number, operation, parent_snapshot_id IS NULL "
                       "FROM lake_iceberg.snapshots(%s)", (location,)).fetchall()
    assert snaps == [(1, "append", True), (2, "append", False)]
    size = db.execute("SELECT lake_iceberg.table_size('f')").fetchone()[0]
    assert size == db.execute("SELECT sum(file_size_in_bytes) FROM lake_iceberg.files(%s)",
                              (location,)).fetchone()[0]
    # Postgres' own size functions answer the same for the table (psql's \d+ calls
    # pg_table_size), in a subquery and a prepared statement too, and are unchanged for
    # other relations (NULL for one that does not exist).
    db.execute("CREATE TABLE h (x int)")
    db.execute("INSERT INTO h SELECT generate_series(1, 1000)")
    assert db.execute("SELECT pg_table_size('f'), pg_total_relation_size('f'::regclass), "
                      "(SELECT pg_table_size(c.oid) FROM pg_class c WHERE relname = 'f')").fetchone() == \
        (size, size, size)
    assert db.execute("SELECT pg_table_size(%s::regclass)", ("f",), prepare=True).fetchone() == (size,)
    heap = db.execute("SELECT pg_table_size('h'), pg_total_relation_size('h'), pg_table_size(0)").fetchone()
    assert heap[0] > 0 and heap[1] >= heap[0] and heap[2] is None
    assert heap[0] == db.execute("SELECT pg_catalog.pg_relation_size('h', 'main') + "
                                 "pg_relation_size('h', 'fsm') + pg_relation_size('h', 'vm')").fetchone()[0]
    db.execute("CREATE ROLE nobody_here LOGIN")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connect(user="nobody_here").execute("SELECT lake_iceberg.metadata(%s)", (location,))
    finally:
        db.execute("DROP ROLE nobody_here")


def test_create_table_as(db):
    db.execute("CREATE TABLE src AS SELECT g AS id, 'n' || g AS name, g * 1.5 AS score, "
               "DATE '2024-01-01' + g AS day FROM generate_series(1, 50) g")
    assert db.execute("CREATE TABLE c USING iceberg AS SELECT * FROM src WHERE id <= 40 ORDER BY id DESC").rowcount == 40
    assert db.execute("SELECT count(*), sum(id), min(day), max(name) FROM c").fetchone() == \
        (40, 820, datetime.date(2024, 1, 2), "n9")
    # Unbounded numeric (g * 1.5) became double precision, as for CREATE TABLE.
    assert db.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                      "WHERE attrelid = 'c'::regclass AND attname = 'score'").fetchone() == ("double precision",)
    assert db.execute("SELECT score FROM c WHERE id = 3").fetchone() == (4.5,)
    db.execute("CREATE TABLE c2 (a, b) USING iceberg AS SELECT id, name FROM src WITH NO DATA")
    assert db.execute("SELECT count(*) FROM c2").fetchone() == (0,)
    assert db.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'c2'::regclass AND attnum > 0 "
                      "ORDER BY attnum").fetchall() == [("a",), ("b",)]
    db.execute("CREATE TABLE IF NOT EXISTS c USING iceberg AS SELECT 1")
    db.execute("SET default_table_access_method = 'iceberg'")
    db.execute("SELECT id INTO c3 FROM src WHERE id < 5")
    db.execute("CREATE TEMP TABLE c4 AS SELECT 1 AS x")
    db.execute("RESET default_table_access_method")
    assert db.execute("SELECT relkind FROM pg_class WHERE relname IN ('c3', 'c4') ORDER BY relname").fetchall() == \
        [("f",), ("r",)]
    assert db.execute("SELECT count(*) FROM c3").fetchone() == (4,)
    db.execute("BEGIN")
    db.execute("CREATE TABLE c5 USING iceberg AS SELECT 1 AS x")
    db.execute("ROLLBACK")
    assert metadata_location(db, "c5") is None


def test_alter_columns_keep_every_file_readable_by_field_id(db, catalog):
    db.execute("CREATE TABLE e (id int, name text, n int) USING iceberg")
    db.execute("INSERT INTO e VALUES (1, 'a', 10)")
    db.execute("ALTER TABLE e ADD COLUMN extra text")
    db.execute("INSERT INTO e VALUES (2, 'b', 20, 'x')")
    db.execute("ALTER TABLE e RENAME COLUMN name TO label")
    db.execute("ALTER TABLE e ALTER COLUMN n TYPE bigint")
    db.execute("INSERT INTO e VALUES (3, 'c', 30000000000, 'y')")
    assert db.execute("SELECT * FROM e ORDER BY id").fetchall() == \
        [(1, "a", 10, None), (2, "b", 20, "x"), (3, "c", 30000000000, "y")]
    db.execute("ALTER TABLE e DROP COLUMN extra")
    assert db.execute("SELECT * FROM e ORDER BY id").fetchall() == \
        [(1, "a", 10), (2, "b", 20), (3, "c", 30000000000)]
    assert db.execute("SELECT label FROM e WHERE n > 15 ORDER BY id").fetchall() == [("b",), ("c",)]
    db.execute("UPDATE e SET label = 'A' WHERE id = 1")
    table = catalog.load_table("public.e")
    assert [f.name for f in table.schema().fields] == ["id", "label", "n"]
    assert table.scan().to_arrow().sort_by("id").to_pylist() == \
        [{"id": 1, "label": "A", "n": 10}, {"id": 2, "label": "b", "n": 20}, {"id": 3, "label": "c", "n": 30000000000}]
    # Only Iceberg's promotions; a rolled-back ALTER leaves the schema as it was.
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="Iceberg promotes only"):
        db.execute("ALTER TABLE e ALTER COLUMN n TYPE text")
    db.execute("BEGIN")
    db.execute("ALTER TABLE e ADD COLUMN later int")
    db.execute("ROLLBACK")
    assert [f.name for f in catalog.load_table("public.e").schema().fields] == ["id", "label", "n"]
    assert db.execute("SELECT count(*) FROM e").fetchone() == (3,)


def test_add_column_with_a_constant_default_gives_existing_rows_the_value_in_every_engine(db, catalog, duck):
    """As Postgres gives existing rows a non-volatile default evaluated once, the
    value is the new field's Iceberg initial-default: our scans, PyIceberg and
    compaction read it for rows written before; rows written after get it from
    Postgres' DEFAULT."""
    db.execute("CREATE TABLE ad (id int) USING iceberg")
    db.execute("INSERT INTO ad VALUES (1), (2)")
    db.execute("SET TimeZone = 'Asia/Tokyo'")  # the value is stored in UTC whatever the session's zone
    db.execute("""ALTER TABLE ad ADD COLUMN n int DEFAULT 40 + 2,
                                ADD COLUMN s text DEFAULT 'it''s',
                                ADD COLUMN p numeric(10,2) DEFAULT 12.5,
                                ADD COLUMN d date DEFAULT '2024-02-29',
                                ADD COLUMN ts timestamptz DEFAULT '2024-01-01 09:00:00+09',
                                ADD COLUMN b bytea DEFAULT '\\x00ff',
                                ADD COLUMN f boolean DEFAULT true,
                                ADD COLUMN z int DEFAULT NULL""")
    db.execute("RESET TimeZone")
    db.execute("INSERT INTO ad (id) VALUES (3)")
    db.execute("INSERT INTO ad VALUES (4, 7, 'x', 1, '2000-01-01', '2000-01-01 00:00:00+00', '\\x01', false, 9)")
    at = datetime.datetime(2024, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)
    old = ("it's", decimal.Decimal("12.50"), datetime.date(2024, 2, 29), at, b"\x00\xff", True)
    expected = [(1, 42, *old, None), (2, 42, *old, None), (3, 42, *old, None),
                (4, 7, "x", decimal.Decimal("1.00"), datetime.date(2000, 1, 1),
                 datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc), b"\x01", False, 9)]
    db.execute("SET TimeZone = 'UTC'")
    got = db.execute("SELECT id, n, s, p, d, ts, b, f, z FROM ad ORDER BY id").fetchall()
    assert [(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), r[7], r[8]) for r in got] == expected
    assert db.execute("SELECT count(*) FROM ad WHERE n = 42 AND s = 'it''s'").fetchone() == (3,)
    field = {f.name: f for f in catalog.load_table("public.ad").schema().fields}
    assert field["n"].initial_default == 42 and field["z"].initial_default is None
    # PyIceberg applies the initial default to the files written before the ALTER.
    arrow = catalog.load_table("public.ad").scan().to_arrow().sort_by("id").to_pylist()
    assert [(r["id"], r["n"], r["s"], r["p"], r["d"], r["f"]) for r in arrow] == \
        [(e[0], e[1], e[2], e[3], e[4], e[7]) for e in expected]
    # So does DuckDB's iceberg_scan.
    assert duck.execute(f"SELECT count(*) FILTER (WHERE n = 42 AND s = 'it''s') "
                        f"FROM iceberg_scan('{metadata_location(db, 'ad')}')").fetchone() == (3,)
    # A rename and a promotion keep it; compaction writes it into the files.
    db.execute("ALTER TABLE ad RENAME COLUMN n TO m")
    db.execute("ALTER TABLE ad ALTER COLUMN m TYPE bigint")
    db.execute("VACUUM ad")
    assert db.execute("SELECT id, m FROM ad ORDER BY id").fetchall() == [(1, 42), (2, 42), (3, 42), (4, 7)]
    location = metadata_location(db, "ad")
    assert duck.execute(f"SELECT count(*) FILTER (WHERE m = 42) FROM iceberg_scan('{location}')").fetchone() == (3,)


def test_time_travel_by_snapshot_id_and_timestamp(db):
    db.execute("CREATE TABLE tt (x int) USING iceberg")
    db.execute("INSERT INTO tt VALUES (1)")
    first = db.execute("SELECT snapshot_id, timestamp FROM lake_iceberg.snapshots(%s)",
                       (metadata_location(db, "tt"),)).fetchall()[-1]
    db.execute("INSERT INTO tt VALUES (2)")
    db.execute("DELETE FROM tt WHERE x = 1")
    assert db.execute("SELECT array_agg(x) FROM tt").fetchone() == ([2],)
    db.execute("SELECT set_config('pg_lake_iceberg.as_of', %s, false)", (str(first[0]),))
    assert db.execute("SELECT array_agg(x) FROM tt").fetchone() == ([1],)
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="as_of"):
        db.execute("INSERT INTO tt VALUES (3)")
    db.execute("SELECT set_config('pg_lake_iceberg.as_of', %s, false)", (first[1].isoformat(),))
    assert db.execute("SELECT array_agg(x) FROM tt").fetchone() == ([1],)
    db.execute("SET pg_lake_iceberg.as_of = '1999-01-01 00:00+00'")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="no snapshot at or before that time"):
        db.execute("SELECT * FROM tt")
    db.execute("SET pg_lake_iceberg.as_of = '42'")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="snapshot 42"):
        db.execute("SELECT * FROM tt")
    db.execute("RESET pg_lake_iceberg.as_of")
    assert db.execute("SELECT array_agg(x) FROM tt").fetchone() == ([2],)


def test_replaced_and_dropped_files_go_to_the_deletion_queue(db):
    db.execute("CREATE TABLE q (x int) USING iceberg")
    db.execute("INSERT INTO q VALUES (1), (2)")
    (data_file,) = db.execute("SELECT file_path FROM lake_iceberg.files(%s)",
                              (metadata_location(db, "q"),)).fetchone()
    db.execute("DELETE FROM q WHERE x = 1")  # rewrites the file
    queued = [r[0] for r in db.execute("SELECT path FROM lake_engine.deletion_queue")]
    assert queued == [data_file]
    location = metadata_location(db, "q")
    db.execute("DROP TABLE q")
    queued = {r[0] for r in db.execute("SELECT path FROM lake_engine.deletion_queue WHERE table_name = 'public.q'")}
    assert location in queued and data_file in queued
    assert any(p.endswith(".avro") for p in queued) and len(queued) >= 6


def test_creating_or_attaching_needs_write_access_to_the_location(db, connect, catalog):
    db.execute("CREATE ROLE maker LOGIN")
    db.execute("GRANT CREATE ON SCHEMA public TO maker")
    try:
        maker = connect(user="maker")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="foreign server pg_lake_iceberg"):
            maker.execute("CREATE TABLE mine (a int) USING iceberg")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="foreign server pg_lake_iceberg"):
            maker.execute("IMPORT FOREIGN SCHEMA public FROM SERVER pg_lake_iceberg INTO public")
        db.execute("GRANT lake_read TO maker")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="lake_write"):
            maker.execute("CREATE TABLE mine (a int) USING iceberg")
        catalog.create_namespace("theirs")
        from pyiceberg.schema import Schema
        from pyiceberg.types import LongType, NestedField
        catalog.create_table("theirs.t", schema=Schema(NestedField(1, "id", LongType(), required=False)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="lake_write"):
            maker.execute("IMPORT FOREIGN SCHEMA theirs FROM SERVER pg_lake_iceberg INTO public")
        db.execute("GRANT lake_write TO maker")
        maker.execute("CREATE TABLE mine (a int) USING iceberg")
        maker.execute("INSERT INTO mine VALUES (1)")
        assert maker.execute("SELECT a FROM mine").fetchall() == [(1,)]
    finally:
        db.execute("DROP OWNED BY maker")
        db.execute("DROP ROLE maker")


def test_intervals_are_stored_as_a_struct_of_their_fields(db, duck):
    """As in the original: an interval column is struct(months, days, microseconds), so
    months, days and time stay apart exactly as Postgres keeps them; other engines read
    the struct."""
    db.execute("CREATE TABLE iv (id int, d interval) USING iceberg")
    values = ["1 year 2 mons 3 days 04:05:06.789", "-1 mons +2 days -03:00:00", "00:00:00.000001", None,
              "1000000 days", "-178000000 years"]
    for i, v in enumerate(values):
        db.execute("INSERT INTO iv VALUES (%s, %s::interval)", (i, v))
    expected = db.execute("SELECT id, v::interval::text FROM unnest(%s::text[]) WITH ORDINALITY AS u(v, id)",
                          (values,)).fetchall()
    got = db.execute("SELECT id + 1, d::text FROM iv ORDER BY id").fetchall()
    assert got == expected
    db.execute("UPDATE iv SET d = d + interval '1 day' WHERE id = 0")
    assert db.execute("SELECT d::text FROM iv WHERE id = 0").fetchone() == ("1 year 2 mons 4 days 04:05:06.789",)
    assert db.execute("SELECT count(*) FROM iv WHERE d > interval '1 year'").fetchone() == (2,)
    location = metadata_location(db, "iv")
    assert duck.execute(f"SELECT d.months, d.days, d.microseconds FROM iceberg_scan('{location}') "
                        "WHERE id = 1").fetchone() == (-1, 2, -10_800_000_000)
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="interval inside an array"):
        db.execute("CREATE TABLE ivs (d interval[]) USING iceberg")


def test_small_manifests_are_merged_and_every_engine_reads_the_merged_table(db, catalog, duck):
    """Row-by-row commits do not grow the manifest list without bound: once a commit would
    leave `commit.manifest.min-count-to-merge` small manifests (Iceberg's property, default
    100), they are merged into one, for data and for position delete manifests alike."""
    db.execute("CREATE TABLE mm (id int, v text) USING iceberg")
    table = catalog.load_table("public.mm")
    with table.transaction() as tx:  # a REST client sets the property; Postgres follows it
        tx.set_properties(**{"commit.manifest.min-count-to-merge": "4"})
    counts = []
    for i in range(1, 11):
        db.execute("INSERT INTO mm VALUES (%s, %s)", (i, f"v{i}"))
        counts.append(len(catalog.load_table("public.mm").current_snapshot().manifests(table.io)))
    assert counts == [1, 2, 3, 1, 2, 3, 1, 2, 3, 1]
    for i in (2, 5, 9):  # each a position delete file of its own (or its file dropped)
        db.execute("UPDATE mm SET v = v || '!' WHERE id = %s", (i,))
    db.execute("DELETE FROM mm WHERE id = 7")
    expected = [(i, f"v{i}" + ("!" if i in (2, 5, 9) else "")) for i in range(1, 11) if i != 7]
    assert db.execute("SELECT id, v FROM mm ORDER BY id").fetchall() == expected
    got = catalog.load_table("public.mm").scan().to_arrow().sort_by("id")
    assert list(zip(got.column("id").to_pylist(), got.column("v").to_pylist())) == expected
    assert duck.execute(f"SELECT id, v FROM iceberg_scan('{metadata_location(db, 'mm')}') ORDER BY id"
                        ).fetchall() == expected
    assert len(catalog.load_table("public.mm").current_snapshot().manifests(table.io)) <= 6


def test_small_and_large_statements_store_the_same_values(db):
    """A small statement's rows reach DuckDB inline (a VALUES list), a large one's through
    a staging table: both store every value exactly, whatever SQL or CSV syntax it holds."""
    tricky = ["", " lead and trail ", "a,b", 'say "hi"', "line\nbreak", "cr\r\nlf", "semi; colon",
              "it's", "-- not a comment", "/* nor this */", "$$dollar$$", "s3://bucket/x.parquet",
              "back\\slash", "ünïcödé ✓", "NULL", "\\N", "true"]
    db.execute("CREATE TABLE small_t (id int, v text, n numeric(10,2), b bytea, f boolean, d date) USING iceberg")
    db.execute("CREATE TABLE large_t (id int, v text, n numeric(10,2), b bytea, f boolean, d date) USING iceberg")
    rows = [(i, v, decimal.Decimal("-1.25") if i % 2 else None, v.encode(), i % 3 == 0,
             datetime.date(2024, 2, 29)) for i, v in enumerate(tricky)] + [(99, None, None, None, None, None)]
    for r in rows:  # one small statement per row
        db.execute("INSERT INTO small_t VALUES (%s, %s, %s, %s, %s, %s)", r)
    # One statement beyond the inline size, through Postgres' rows (not inside DuckDB):
    # the same rows plus padding.
    db.execute("SET pg_lake_table.enable_full_query_pushdown = off")
    db.execute("INSERT INTO large_t SELECT * FROM small_t UNION ALL "
               "SELECT 1000 + g, repeat('x', 100), NULL, NULL, NULL, NULL FROM generate_series(1, 500) g")
    db.execute("RESET pg_lake_table.enable_full_query_pushdown")
    assert db.execute("SELECT count(*) FROM lake_iceberg.files(%s)",
                      (metadata_location(db, "large_t"),)).fetchone() == (1,)
    expected = sorted(rows)
    assert db.execute("SELECT * FROM small_t ORDER BY id").fetchall() == expected
    assert db.execute("SELECT * FROM large_t WHERE id < 1000 ORDER BY id").fetchall() == expected
    assert db.execute("SELECT count(*) FROM large_t").fetchone() == (len(rows) + 500,)
    # Each statement's statistics still prune: the empty string and NULL stay apart.
    assert db.execute("SELECT id FROM small_t WHERE v = ''").fetchall() == [(0,)]
    assert db.execute("SELECT id FROM small_t WHERE v IS NULL").fetchall() == [(99,)]
