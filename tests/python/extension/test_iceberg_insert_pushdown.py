"""INSERT INTO an Iceberg table SELECT ... FROM lake tables runs inside DuckDB: the
rows are computed and written as the table's data file without passing through
Postgres (Custom Scan (Iceberg Insert)), and the result is what the row path gives:
same values, same checks, same privileges, same transactions."""

import psycopg
import pytest

from test_pushdown import COLUMNS, ROWS, plan


@pytest.fixture
def lake(db, localdir):
    db.execute(f"CREATE TABLE heap_t ({COLUMNS})")
    db.execute(f"INSERT INTO heap_t VALUES {ROWS}")
    db.execute(f"COPY heap_t TO '{localdir}/t.parquet'")
    db.execute(f"CREATE FOREIGN TABLE lake_t ({COLUMNS}) SERVER pg_lake OPTIONS (path '{localdir}/t.parquet')")
    return db


def files(db, table):
    location = db.execute("SELECT metadata_location FROM lake_catalog.iceberg_tables "
                          "WHERE table_name = %s", (table,)).fetchone()[0]
    return db.execute("SELECT content, record_count FROM lake_iceberg.files(%s)", (location,)).fetchall()


def rows(db, table):
    """As Postgres renders them (NaN equals NaN)."""
    return db.execute(f"SELECT r::text FROM {table} r ORDER BY id").fetchall()


def test_insert_select_runs_in_duckdb_and_matches_the_row_path(lake):
    db = lake
    db.execute(f"CREATE TABLE direct ({COLUMNS}) USING iceberg")
    db.execute(f"CREATE TABLE by_rows ({COLUMNS}) USING iceberg")
    sql = "INSERT INTO direct SELECT * FROM lake_t WHERE id > 1"
    p = plan(db, sql)
    assert "Custom Scan (Iceberg Insert)" in p and "Engine: DuckDB" in p and 'Iceberg Table: "public"."direct"' in p, p
    assert db.execute(sql).rowcount == 6
    db.execute("SET pg_lake_table.enable_full_query_pushdown = off")
    assert "Iceberg Insert" not in plan(db, "INSERT INTO by_rows SELECT * FROM lake_t WHERE id > 1")
    assert db.execute("INSERT INTO by_rows SELECT * FROM lake_t WHERE id > 1").rowcount == 6
    db.execute("RESET pg_lake_table.enable_full_query_pushdown")
    expected = db.execute("SELECT r::text FROM heap_t r WHERE id > 1 ORDER BY id").fetchall()
    # NaN, infinities, extremes, multibyte text, NULLs: the same as Postgres' own rows.
    assert rows(db, "direct") == expected == rows(db, "by_rows")
    # One data file, with the statistics pruning uses.
    assert files(db, "direct") == [("DATA", 6)]
    p = plan(db, "SELECT id FROM direct WHERE id > 100")
    assert "Data Files Skipped: 1" in p, p


def test_expressions_column_lists_and_parameters(lake):
    db = lake
    db.execute("CREATE TABLE agg (g text NOT NULL, n bigint, total numeric(20,2), first_day date, note text) USING iceberg")
    sql = ("INSERT INTO agg (g, n, first_day) "
           "SELECT g, count(*), min(d) FROM lake_t WHERE g IS NOT NULL GROUP BY g")
    assert "Custom Scan (Iceberg Insert)" in plan(db, sql)
    assert db.execute(sql).rowcount == 3
    assert db.execute("SELECT g, n, total, first_day, note FROM agg ORDER BY g").fetchall() == \
        db.execute("SELECT g, count(*), NULL::numeric, min(d), NULL::text FROM heap_t WHERE g IS NOT NULL "
                   "GROUP BY g ORDER BY g").fetchall()
    # A prepared INSERT, its generic plan included, ships its parameters.
    db.execute("CREATE TABLE ids (id int) USING iceberg")
    db.execute("PREPARE ins(int) AS INSERT INTO ids SELECT id FROM lake_t WHERE id > $1")
    db.execute("SET plan_cache_mode = force_generic_plan")
    assert "Custom Scan (Iceberg Insert)" in plan(db, "EXECUTE ins(5)")
    assert db.execute("EXECUTE ins(5)").rowcount == 2
    assert db.execute("EXECUTE ins(6)").rowcount == 1
    assert db.execute("SELECT id FROM ids ORDER BY id").fetchall() == [(6,), (7,), (7,)]
    # An INSERT selecting nothing writes no file.
    assert db.execute("INSERT INTO ids SELECT id FROM lake_t WHERE id > 100").rowcount == 0
    assert len(files(db, "ids")) == 2


def test_checks_and_transactions_hold(lake, localdir):
    db = lake
    db.execute("CREATE TABLE strict (id int, s text NOT NULL) USING iceberg")
    sql = "INSERT INTO strict SELECT id, s FROM lake_t"
    assert "Custom Scan (Iceberg Insert)" in plan(db, sql)
    with pytest.raises(psycopg.errors.NotNullViolation) as e:
        db.execute(sql)
    assert 'null value in column "s" of relation "strict" violates not-null constraint' in str(e.value)
    assert db.execute("SELECT count(*) FROM strict").fetchone() == (0,)
    # A date Iceberg cannot hold is refused naming the column, as on the row path.
    db.execute(f"COPY (SELECT 1 AS id, DATE '10000-01-01' AS d) TO '{localdir}/far.parquet'")
    db.execute(f"CREATE FOREIGN TABLE far (id int, d date) SERVER pg_lake OPTIONS (path '{localdir}/far.parquet')")
    db.execute("CREATE TABLE days (id int, d date) USING iceberg")
    with pytest.raises(psycopg.errors.DatetimeFieldOverflow) as e:
        db.execute("INSERT INTO days SELECT * FROM far")
    assert 'column "d"' in str(e.value) and "9999-12-31" in str(e.value)
    # Rolled back: no trace; committed with other writes: all of it, read back in the
    # transaction that wrote it.
    db.execute("CREATE TABLE heap_log (n int)")
    with db.transaction(force_rollback=True):
        db.execute("INSERT INTO strict SELECT id, s FROM lake_t WHERE s IS NOT NULL")
        assert db.execute("SELECT count(*) FROM strict").fetchone() == (6,)
    assert db.execute("SELECT count(*) FROM strict").fetchone() == (0,)
    with db.transaction():
        db.execute("INSERT INTO strict SELECT id, s FROM lake_t WHERE s IS NOT NULL")
        db.execute("INSERT INTO strict SELECT id + 100, s FROM strict")
        db.execute("INSERT INTO heap_log VALUES (1)")
    assert db.execute("SELECT count(*) FROM strict").fetchone() == (12,)
    assert db.execute("SELECT count(*) FROM heap_log").fetchone() == (1,)


def test_triggers_and_check_constraints_keep_the_row_path(lake):
    db = lake
    db.execute("CREATE TABLE checked (id int CHECK (id < 5)) USING iceberg")
    p = plan(db, "INSERT INTO checked SELECT id FROM lake_t")
    assert "Iceberg Insert" not in p, p
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO checked SELECT id FROM lake_t")
    db.execute("CREATE TABLE audited (id int) USING iceberg")
    db.execute("CREATE TABLE audit (n bigint)")
    # An AFTER trigger sees the statement's rows, as on a heap table.
    db.execute("CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS "
               "$$ BEGIN INSERT INTO audit SELECT count(*) FROM audited; RETURN NULL; END $$")
    db.execute("CREATE TRIGGER a AFTER INSERT OR DELETE ON audited FOR EACH STATEMENT EXECUTE FUNCTION note()")
    assert "Iceberg Insert" not in plan(db, "INSERT INTO audited SELECT id FROM lake_t")
    db.execute("INSERT INTO audited SELECT id FROM lake_t")
    db.execute("DELETE FROM audited WHERE id > 5")
    assert db.execute("SELECT n FROM audit").fetchall() == [(7,), (5,)]
    assert db.execute("SELECT count(*) FROM audited").fetchone() == (5,)
    # A cast Postgres applies on assignment (numeric rounding into a narrower scale)
    # gives Postgres' values, whether it ships or not.
    db.execute("CREATE TABLE narrow (n numeric(20,1)) USING iceberg")
    db.execute("INSERT INTO narrow SELECT n FROM lake_t")
    assert db.execute("SELECT n FROM narrow ORDER BY n NULLS FIRST").fetchall() == \
        db.execute("SELECT n::numeric(20,1) FROM heap_t ORDER BY 1 NULLS FIRST").fetchall()


def test_privileges_are_those_of_insert_select(lake, connect):
    db = lake
    db.execute("CREATE TABLE target (id int) USING iceberg")
    db.execute("CREATE ROLE ins_writer LOGIN")
    try:
        w = connect(user="ins_writer")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            w.execute("INSERT INTO target SELECT id FROM lake_t")
        db.execute("GRANT SELECT ON lake_t TO ins_writer")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            w.execute("INSERT INTO target SELECT id FROM lake_t")
        db.execute("GRANT INSERT ON target TO ins_writer")
        assert "Custom Scan (Iceberg Insert)" in plan(w, "INSERT INTO target SELECT id FROM lake_t")
        assert w.execute("INSERT INTO target SELECT id FROM lake_t").rowcount == 7
        db.execute("REVOKE SELECT ON lake_t FROM ins_writer")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            w.execute("INSERT INTO target SELECT id FROM lake_t")
        assert db.execute("SELECT count(*) FROM target").fetchone() == (7,)
    finally:
        db.execute("DROP OWNED BY ins_writer")
        db.execute("DROP ROLE ins_writer")


def test_other_engines_read_what_duckdb_wrote(lake, duck):
    db = lake
    db.execute(f"CREATE TABLE shared ({COLUMNS}) USING iceberg")
    db.execute("INSERT INTO shared SELECT * FROM lake_t")
    location = db.execute("SELECT metadata_location FROM lake_catalog.iceberg_tables "
                          "WHERE table_name = 'shared'").fetchone()[0]
    assert duck.execute(f"SELECT count(*), sum(i4) FROM iceberg_scan('{location}')").fetchone() == \
        db.execute("SELECT count(*), sum(i4) FROM heap_t").fetchone()


def copy_notices(db, sql):
    notices = []
    db.add_notice_handler(lambda d: notices.append(d.message_primary))
    db.execute("SET client_min_messages = debug1")
    try:
        count = db.execute(sql).rowcount
    finally:
        db.execute("RESET client_min_messages")
        db._notice_handlers.clear()
    return count, any("runs inside DuckDB" in n for n in notices)


def test_copy_of_a_matching_parquet_file_stays_in_duckdb(lake, localdir):
    db = lake
    db.execute(f"CREATE TABLE copied ({COLUMNS}) USING iceberg")
    assert copy_notices(db, f"COPY copied FROM '{localdir}/t.parquet'") == (7, True)
    assert rows(db, "copied") == db.execute("SELECT r::text FROM heap_t r ORDER BY id").fetchall()
    # A column list, by position; the other columns are NULL.
    db.execute("CREATE TABLE partial (a int, n numeric(16,2), extra text) USING iceberg")
    db.execute(f"COPY (SELECT id, n FROM heap_t) TO '{localdir}/two.parquet'")
    assert copy_notices(db, f"COPY partial (a, n) FROM '{localdir}/two.parquet'") == (7, True)
    assert db.execute("SELECT count(*), sum(n), count(extra) FROM partial").fetchone() == \
        db.execute("SELECT count(*), sum(n), 0 FROM heap_t").fetchone()
    # A file type that needs Postgres' conversion (double into numeric) takes the row
    # path, with the row path's result.
    db.execute(f"COPY (SELECT id, f8 AS n FROM heap_t WHERE id IN (5, 7)) TO '{localdir}/dbl.parquet'")
    db.execute("CREATE TABLE converted (a int, n numeric(16,2)) USING iceberg")
    assert copy_notices(db, f"COPY converted FROM '{localdir}/dbl.parquet'") == (2, False)
    assert db.execute("SELECT n FROM converted ORDER BY a").fetchall() == \
        db.execute("SELECT f8::numeric(16,2) FROM heap_t WHERE id IN (5, 7) ORDER BY id").fetchall()
    # NOT NULL holds on the direct path too, and nothing is loaded.
    db.execute("CREATE TABLE strict_copy (a int NOT NULL, n numeric(16,2)) USING iceberg")
    db.execute(f"COPY (SELECT NULLIF(id, 3) AS a, n FROM heap_t) TO '{localdir}/null_a.parquet'")
    with pytest.raises(psycopg.errors.NotNullViolation):
        copy_notices(db, f"COPY strict_copy FROM '{localdir}/null_a.parquet'")
    assert db.execute("SELECT count(*) FROM strict_copy").fetchone() == (0,)


def test_out_of_range_values_clamp(db, localdir):
    """out_of_range_values 'clamp', as in the original: dates and timestamps Iceberg
    cannot hold become its boundaries, NaN and infinite numerics NULL; on the row path
    and inside DuckDB alike. The default stays 'error'."""
    db.execute("CREATE TABLE c (id int, d date, ts timestamp, tz timestamptz, n numeric(10,2)) "
               "USING iceberg WITH (out_of_range_values = 'clamp')")
    db.execute("INSERT INTO c VALUES (1, 'infinity', '-infinity', 'infinity', 'NaN'), "
               "(2, '10000-01-01', '0001-01-01 00:00:00 BC', '2020-01-01 00:00:00+00', 1.5)")
    db.execute(f"COPY (SELECT 3 AS id, DATE '20000-01-01' AS d, TIMESTAMP '1999-01-01' AS ts, "
               f"TIMESTAMPTZ '1999-01-01 00:00:00+00' AS tz, 2.5::numeric(10,2) AS n) TO '{localdir}/far.parquet'")
    db.execute(f"CREATE FOREIGN TABLE far (id int, d date, ts timestamp, tz timestamptz, n numeric(10,2)) "
               f"SERVER pg_lake OPTIONS (path '{localdir}/far.parquet')")
    assert "Custom Scan (Iceberg Insert)" in plan(db, "INSERT INTO c SELECT * FROM far")
    db.execute("INSERT INTO c SELECT * FROM far")
    db.execute("SET TimeZone = 'UTC'")
    got = db.execute("SELECT id, d::text, ts::text, tz::text, n FROM c ORDER BY id").fetchall()
    assert got == [
        (1, "9999-12-31", "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999+00", None),
        (2, "9999-12-31", "0001-01-01 00:00:00", "2020-01-01 00:00:00+00", 1.5),
        (3, "9999-12-31", "1999-01-01 00:00:00", "1999-01-01 00:00:00+00", 2.5),
    ]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="error or clamp"):
        db.execute("ALTER FOREIGN TABLE c OPTIONS (SET out_of_range_values 'wrap')")
    db.execute("ALTER FOREIGN TABLE c OPTIONS (SET out_of_range_values 'error')")
    with pytest.raises(psycopg.errors.DatetimeFieldOverflow):
        db.execute("INSERT INTO c (id, d) VALUES (4, 'infinity')")
    with pytest.raises(psycopg.errors.DatetimeFieldOverflow):
        db.execute("INSERT INTO c SELECT * FROM far")
