"""Full query pushdown: queries over lake tables run in DuckDB as one Custom Scan, and
return exactly what Postgres returns for the same rows in a heap table.

The corpus holds edge values for every type the shippability table (plan::ship) lists:
NULL, extremes, NaN and infinities, empty and multibyte strings, month ends and leap
days, numeric scales. Each query runs on the lake table with pushdown on (and must push
down) and on a heap table holding the same rows (Postgres alone); rows are compared as
Postgres renders them, errors by SQLSTATE."""

import psycopg
import pytest

ROWS = """
(1, 0::int2, 0, 0::int8, 0.0::float8, 0.00, '', 'a', DATE '2024-02-29', TIMESTAMP '2024-02-29 12:00:00', TIMESTAMPTZ '2024-03-10 01:30:00+00', '00000000-0000-0000-0000-000000000001'::uuid, true),
(2, 32767::int2, 2147483647, 9223372036854775807::int8, 'NaN'::float8, 12345678901234.56, 'héllo wörld', 'b', DATE '2023-01-31', TIMESTAMP '2023-01-31 23:59:59.999999', TIMESTAMPTZ '2024-11-03 06:00:00+00', 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid, false),
(3, '-32768'::int2, -2147483648, '-9223372036854775808'::int8, 'Infinity'::float8, -12345678901234.56, '日本語テキスト', 'a', DATE '1999-12-31', TIMESTAMP '1999-12-31 00:00:00', TIMESTAMPTZ '2000-01-01 00:00:00+00', '123e4567-e89b-12d3-a456-426614174000'::uuid, NULL),
(4, NULL, NULL, NULL, '-Infinity'::float8, NULL, NULL, NULL, NULL, NULL, NULL, NULL, true),
(5, 7::int2, -7, 7::int8, -0.5::float8, 0.01, 'a_b%c\\d', 'c', DATE '2000-02-29', TIMESTAMP '2000-02-29 08:30:00', TIMESTAMPTZ '2021-06-30 23:00:00+00', NULL, false),
(6, -1::int2, 3, -3::int8, 1e300::float8, 99999999999999.99, 'ABC', 'b', DATE '2024-12-31', TIMESTAMP '2024-12-31 23:00:00', TIMESTAMPTZ '2024-12-31 23:00:00+00', '00000000-0000-0000-0000-000000000002'::uuid, true),
(7, 2::int2, 2, 2::int8, 2.5::float8, -0.01, 'Ünïcödé', 'a', DATE '2021-03-28', TIMESTAMP '2021-03-28 02:30:00', TIMESTAMPTZ '2021-03-28 01:30:00+00', '00000000-0000-0000-0000-000000000003'::uuid, NULL)
"""

COLUMNS = ("id int, i2 int2, i4 int4, i8 int8, f8 float8, n numeric(16,2), s text, g text, "
           "d date, ts timestamp, tz timestamptz, u uuid, b bool")


@pytest.fixture
def tables(db, localdir):
    db.execute(f"CREATE TABLE heap_t ({COLUMNS})")
    db.execute(f"INSERT INTO heap_t VALUES {ROWS}")
    path = localdir / "t.parquet"
    db.execute(f"COPY heap_t TO '{path}'")
    db.execute(f"CREATE FOREIGN TABLE lake_t ({COLUMNS}) SERVER pg_lake OPTIONS (path '{path}')")
    db.execute("CREATE TABLE heap_u AS SELECT * FROM heap_t WHERE id <= 5")
    db.execute(f"COPY heap_u TO '{localdir}/u.parquet'")
    db.execute(f"CREATE FOREIGN TABLE lake_u ({COLUMNS}) SERVER pg_lake OPTIONS (path '{localdir}/u.parquet')")
    return db


def run(db, sql):
    """Rows as Postgres renders them (text), or the error's SQLSTATE."""
    try:
        return [tuple(None if v is None else str(v) for v in row) for row in db.execute(sql).fetchall()]
    except psycopg.Error as e:
        return ("error", e.sqlstate)


def plan(db, sql):
    return "\n".join(r[0] for r in db.execute("EXPLAIN (VERBOSE, COSTS OFF) " + sql).fetchall())


@pytest.fixture
def text_db(tables):
    """The connection returning every value as Postgres' text."""
    from psycopg.adapt import Loader

    class Text(Loader):
        def load(self, data):
            return bytes(data).decode()

    for oid in [16, 20, 21, 23, 25, 700, 701, 1043, 1082, 1114, 1184, 1700, 2950, 1186, 114, 3802]:
        tables.adapters.register_loader(oid, Text)
    return tables


def same_as_heap(db, sql, ordered=True):
    """`sql` (written over table names t and u) pushed down on the lake tables returns
    what Postgres returns on the heap tables."""
    lake_sql = sql.replace("{t}", "lake_t").replace("{u}", "lake_u")
    heap_sql = sql.replace("{t}", "heap_t").replace("{u}", "heap_u")
    p = plan(db, lake_sql)
    assert "Custom Scan (Query Pushdown)" in p, f"not pushed down:\n{p}"
    lake = run(db, lake_sql)
    heap = run(db, heap_sql)
    if not ordered and isinstance(lake, list):
        lake, heap = sorted(lake, key=repr), sorted(heap, key=repr)
    assert lake == heap, f"{lake_sql}\nlake: {lake}\nheap: {heap}"
    return lake


CORPUS = [
    # comparisons and ordering of every type, NULLs first and last
    *[f"SELECT id, {c} FROM {{t}} ORDER BY {c} {d} NULLS {n}, id"
      for c in ["i2", "i4", "i8", "f8", "n", "s", "d", "ts", "tz", "u", "b"]
      for d, n in [("ASC", "LAST"), ("DESC", "FIRST"), ("ASC", "FIRST")]],
    "SELECT id FROM {t} ORDER BY s, id",
    "SELECT id FROM {t} ORDER BY s DESC, id",
    "SELECT id FROM {t} WHERE s > 'a' ORDER BY id",
    "SELECT id FROM {t} WHERE s < 'é' AND s >= 'A' ORDER BY id",
    "SELECT id FROM {t} WHERE f8 > 1 ORDER BY id",
    "SELECT id FROM {t} WHERE f8 = 'NaN' ORDER BY id",
    "SELECT id FROM {t} WHERE u > '00000000-0000-0000-0000-000000000002' ORDER BY id",
    "SELECT id FROM {t} WHERE d >= ts ORDER BY id",
    "SELECT id FROM {t} WHERE b IS TRUE ORDER BY id",
    "SELECT id FROM {t} WHERE b IS NOT FALSE ORDER BY id",
    "SELECT id FROM {t} WHERE b IS UNKNOWN ORDER BY id",
    "SELECT id FROM {t} WHERE n IS DISTINCT FROM 0.01 ORDER BY id",
    "SELECT id FROM {t} WHERE i4 IN (2, 3, -7) ORDER BY id",
    "SELECT id FROM {t} WHERE s NOT IN ('ABC', '') ORDER BY id",
    # aggregates
    "SELECT count(*), count(i2), sum(i2), sum(i4), sum(n), min(s), max(s), min(d), max(tz), "
    "max(f8), min(f8), bool_and(b), bool_or(b) FROM {t}",
    "SELECT g, count(*), sum(n), avg(n), avg(i4), avg(i2), min(ts) FROM {t} GROUP BY g ORDER BY g NULLS FIRST",
    "SELECT g, count(DISTINCT b), count(*) FILTER (WHERE i4 > 0) FROM {t} GROUP BY g ORDER BY g",
    "SELECT avg(n) FROM {t} WHERE id > 100",
    "SELECT sum(i8) FROM {t} WHERE id <> 3",
    "SELECT g, b, count(*) FROM {t} GROUP BY ROLLUP (g, b) ORDER BY g NULLS FIRST, b NULLS FIRST, 3",
    "SELECT g, count(*), GROUPING(g) FROM {t} GROUP BY CUBE (g) ORDER BY g NULLS FIRST, 2",
    "SELECT g FROM {t} GROUP BY g HAVING count(*) > 1 ORDER BY g",
    # arithmetic, errors as Postgres raises them
    "SELECT id, i4 + 1, i4 - i2, i8 * 2 FROM {t} WHERE id IN (1, 5, 6) ORDER BY id",
    "SELECT i4 + 1 FROM {t} WHERE id = 2",
    "SELECT i8 * 2 FROM {t} WHERE id = 2",
    "SELECT -i4 FROM {t} WHERE id = 3",
    "SELECT i2 + i2 FROM {t} WHERE id = 2",
    "SELECT id, i4 / 2, i4 % 2, -7 / 2, -7 % 2, i8 / i4 FROM {t} WHERE id IN (5, 6, 7) ORDER BY id",
    "SELECT i4 / i2 FROM {t} WHERE id = 1",
    "SELECT i4 % 0 FROM {t} WHERE id = 5",
    "SELECT id, n * n, n + 1, n - 0.005, n * 3 FROM {t} WHERE id IN (1, 5, 7) ORDER BY id",
    "SELECT id, n / 3, sum(n) / count(*) FROM {t} GROUP BY id, n ORDER BY id",
    # dates: month ends, leap days, intervals
    "SELECT id, d + 1, d - 1, d - DATE '2000-01-01', d + interval '1 month', d - interval '1 year', "
    "ts + interval '1 day 02:00', ts - interval '-3 months' FROM {t} ORDER BY id",
    "SELECT id, extract(year FROM d), extract(month FROM d), extract(day FROM d), extract(dow FROM d), "
    "extract(isodow FROM d), extract(doy FROM d), extract(week FROM d), extract(quarter FROM d), "
    "extract(isoyear FROM d), date_part('year', ts), extract(year FROM ts) FROM {t} ORDER BY id",
    "SELECT id, date_trunc('month', ts), date_trunc('week', ts), date_trunc('year', ts), "
    "date_trunc('hour', ts) FROM {t} ORDER BY id",
    "SELECT id FROM {t} WHERE d BETWEEN DATE '2000-01-01' AND DATE '2023-12-31' ORDER BY id",
    "SELECT id FROM {t} WHERE tz > TIMESTAMPTZ '2021-06-30 22:00:00-01' ORDER BY id",
    # strings on multibyte text
    "SELECT id, length(s), char_length(s), substring(s, 2, 3), substr(s, 3), s || '!' || g FROM {t} ORDER BY id",
    "SELECT id FROM {t} WHERE s LIKE '%ö%' ORDER BY id",
    "SELECT id FROM {t} WHERE s LIKE 'a\\_b%' ORDER BY id",
    "SELECT id FROM {t} WHERE s LIKE 'a_b\\%%' ORDER BY id",
    "SELECT id FROM {t} WHERE s NOT LIKE '%e%' ORDER BY id",
    "SELECT id FROM {t} WHERE s LIKE '日_語%' ORDER BY id",
    # CASE, COALESCE, NULLIF, GREATEST/LEAST, casts
    "SELECT id, CASE WHEN i4 > 0 THEN 'pos' WHEN i4 < 0 THEN 'neg' ELSE 'zero' END, "
    "CASE g WHEN 'a' THEN 1 WHEN 'b' THEN 2 END, COALESCE(s, g, '?'), NULLIF(g, 'a'), "
    "greatest(i2, i4), least(d, DATE '2010-01-01'), greatest(s, g) FROM {t} ORDER BY id",
    "SELECT id, i2::int8, i4::int2, i8::float8, i4::numeric, d::timestamp, ts::date, i4::text FROM {t} WHERE id <> 3 ORDER BY id",
    "SELECT i4::int2 FROM {t} WHERE id = 2",
    # joins, subqueries, set operations, window functions, DISTINCT, LIMIT
    "SELECT t.id, u.id FROM {t} t JOIN {u} u ON t.g = u.g ORDER BY 1, 2",
    "SELECT t.id, u.id FROM {t} t LEFT JOIN {u} u ON t.id = u.id + 3 ORDER BY 1, 2",
    "SELECT t.id, u.id FROM {t} t RIGHT JOIN {u} u ON t.id = u.id + 3 ORDER BY 1, 2",
    "SELECT t.id, u.id FROM {t} t FULL JOIN {u} u ON t.id = u.id + 3 ORDER BY 1 NULLS FIRST, 2",
    "SELECT g, id FROM {t} t JOIN {u} u USING (g, id) ORDER BY 2",
    "SELECT id FROM {t} t WHERE EXISTS (SELECT 1 FROM {u} u WHERE u.g = t.g AND u.id <> t.id) ORDER BY id",
    "SELECT id FROM {t} t WHERE NOT EXISTS (SELECT 1 FROM {u} u WHERE u.i4 = t.i4) ORDER BY id",
    "SELECT id FROM {t} WHERE i4 IN (SELECT i4 FROM {u} WHERE i4 > 0) ORDER BY id",
    "SELECT id FROM {t} WHERE i4 NOT IN (SELECT i4 FROM {u}) ORDER BY id",
    "SELECT id FROM {t} WHERE i4 > ALL (SELECT i4 FROM {u} WHERE i4 IS NOT NULL) ORDER BY id",
    "SELECT id FROM {t} WHERE i4 < ANY (SELECT i4 FROM {u}) ORDER BY id",
    "SELECT id, (SELECT max(u.id) FROM {u} u WHERE u.g = t.g) FROM {t} t ORDER BY id",
    "SELECT id, (SELECT u.id FROM {u} u) FROM {t} t",
    "SELECT g FROM {t} UNION SELECT g FROM {u} ORDER BY 1 NULLS FIRST",
    "SELECT g FROM {t} UNION ALL SELECT s FROM {u} ORDER BY 1 NULLS FIRST",
    "SELECT i4 FROM {t} INTERSECT SELECT i4 FROM {u} ORDER BY 1",
    "SELECT i2 FROM {t} EXCEPT ALL SELECT i2 FROM {u} ORDER BY 1",
    "SELECT i2 FROM {t} UNION SELECT i4 FROM {u} ORDER BY 1",
    "WITH x AS (SELECT g, count(*) AS c FROM {t} GROUP BY g) SELECT g, c FROM x WHERE c > 1 ORDER BY g",
    "WITH x AS MATERIALIZED (SELECT * FROM {t} WHERE id > 2) SELECT a.id, b.id FROM x a JOIN x b ON a.g = b.g ORDER BY 1, 2",
    "SELECT * FROM (SELECT g, max(id) AS m FROM {t} GROUP BY g) s WHERE m > 2 ORDER BY g",
    "SELECT id, row_number() OVER (ORDER BY id DESC), rank() OVER (PARTITION BY g ORDER BY i2), "
    "dense_rank() OVER (ORDER BY g), sum(i4) OVER (PARTITION BY g), count(*) OVER () FROM {t} ORDER BY id",
    "SELECT DISTINCT g FROM {t} ORDER BY g NULLS FIRST",
    "SELECT DISTINCT ON (g) g, id FROM {t} ORDER BY g, id DESC",
    "SELECT id FROM {t} ORDER BY id LIMIT 3 OFFSET 2",
    "SELECT id FROM {t} ORDER BY id OFFSET 5",
    "SELECT count(*) FROM {t} t, {u} u",
    "SELECT id FROM {t} t WHERE id = (SELECT min(id) FROM {u} WHERE g = t.g) ORDER BY id",
]


@pytest.mark.parametrize("sql", CORPUS)
def test_pushed_down_same_as_postgres(text_db, sql):
    same_as_heap(text_db, sql)


def test_results_stream_and_errors_carry_postgres_sqlstate(text_db):
    db = text_db
    assert run(db, "SELECT i4 + 1 FROM lake_t WHERE id = 2") == ("error", "22003")
    assert run(db, "SELECT i4 / i2 FROM lake_t WHERE id = 1") == ("error", "22012")
    assert run(db, "SELECT (SELECT u.id FROM lake_u u) FROM lake_t") == ("error", "21000")


# Constructs that must stay in Postgres (and the result is still right).
STAYS = [
    ("SELECT sum(f8) FROM {t} WHERE f8 < 10", "aggregate sum(double precision)"),
    ("SELECT g FROM {t} GROUP BY g HAVING avg(f8) < 10 ORDER BY g", "aggregate avg(double precision)"),
    ("SELECT id FROM {t} WHERE f8 + 1 > 2 ORDER BY id", "operator +(double precision, double precision)"),
    ("SELECT id FROM {t} WHERE lower(s) = 'abc' ORDER BY id", "function lower(text)"),
    ("SELECT id FROM {t} WHERE s ILIKE '%É%' ORDER BY id", "operator ~~*(text, text)"),
    ("SELECT id FROM {t} WHERE s ~ 'l+' ORDER BY id", "operator ~(text, text)"),
    ("SELECT id FROM {t} WHERE substring(s, 0, 2) = 'a' ORDER BY id", "function substring(text, integer, integer)"),
    ("SELECT id FROM {t} WHERE n::int4 > 0 ORDER BY id", "cast from numeric to integer"),
    ("SELECT id FROM {t} WHERE tz::date > '2020-01-01' ORDER BY id", "cast from timestamp with time zone to date"),
    ("SELECT id FROM {t} ORDER BY s COLLATE \"en-x-icu\", id", 'text under collation "en-x-icu"'),
    ("SELECT id FROM {t} WHERE id IN (SELECT id FROM heap_u) ORDER BY id", 'table "public"."heap_u"'),
    ("SELECT id FROM {t} WHERE n / 3 > 1 ORDER BY id", "operator /(numeric, numeric)"),
]


@pytest.mark.parametrize("sql,blocker", STAYS)
def test_unshippable_stays_in_postgres(text_db, sql, blocker):
    db = text_db
    lake_sql = sql.replace("{t}", "lake_t").replace("{u}", "lake_u")
    heap_sql = sql.replace("{t}", "heap_t").replace("{u}", "heap_u")
    p = plan(db, lake_sql)
    assert "Custom Scan (Query Pushdown)" not in p, p
    assert "Not Vectorized Constructs:" in p and blocker in p, p
    assert run(db, lake_sql) == run(db, heap_sql)


def test_select_items_postgres_computes(text_db):
    """Items DuckDB cannot compute identically are computed by Postgres over DuckDB's
    columns: the query still ships."""
    for sql in ["SELECT id, f8 + 1, lower(s), n / 3, round(n, 1), substring(s, 0, 2) FROM {t} ORDER BY id",
                "SELECT g, avg(n), sum(n) / count(*), avg(i8) FROM {t} GROUP BY g ORDER BY g"]:
        same_as_heap(text_db, sql)
    p = plan(text_db, "SELECT id, lower(s) FROM lake_t")
    assert "lower(" in p.split("Vectorized SQL:")[0]


def test_switch_off(tables):
    db = tables
    q = "SELECT count(*) FROM lake_t"
    assert "Custom Scan (Query Pushdown)" in plan(db, q)
    db.execute("SET pg_lake_table.enable_full_query_pushdown = off")
    p = plan(db, q)
    assert "Custom Scan (Query Pushdown)" not in p and "Foreign Scan" in p
    assert db.execute(q).fetchone() == (7,)


def test_explain_shows_engine_sql_and_duckdb_plan(tables):
    p = plan(tables, "SELECT g, count(*) FROM lake_t GROUP BY g")
    assert "Engine: DuckDB" in p
    assert "Vectorized SQL: SELECT" in p and "GROUP BY" in p
    assert "DuckDB Plan:" in p and "READ_PARQUET" in p
    rows = tables.execute("EXPLAIN (ANALYZE, COSTS OFF) SELECT g FROM lake_t").fetchall()
    assert any("actual" in r[0] and "rows=7" in r[0] for r in rows), rows


def test_parameters_ship_as_values(tables):
    db = tables
    db.execute("PREPARE p(int, text) AS SELECT id FROM lake_t WHERE i4 > $1 AND g = $2 ORDER BY id")
    assert db.execute("EXECUTE p(0, 'a')").fetchall() == [(7,)]
    want = db.execute("SELECT id FROM heap_t WHERE i4 > 0 AND g = 'b' ORDER BY id").fetchall()
    db.execute("SET plan_cache_mode = force_generic_plan")
    db.execute("PREPARE g(int, text) AS SELECT id FROM lake_t WHERE i4 > $1 AND g = $2 ORDER BY id")
    for _ in range(3):
        assert db.execute("EXECUTE g(0, 'b')").fetchall() == want
    assert "Custom Scan (Query Pushdown)" in plan(db, "EXECUTE g(0, 'b')")
    # psycopg's server-side parameters, and PL/pgSQL variables
    assert db.execute("SELECT id FROM lake_t WHERE i4 > %s AND g = %s ORDER BY id", (0, "b"),
                      prepare=True).fetchall() == want
    db.execute("""CREATE FUNCTION n_above(x int) RETURNS bigint LANGUAGE plpgsql AS
                  $$ DECLARE r bigint; BEGIN SELECT count(*) INTO r FROM lake_t WHERE i4 > x; RETURN r; END $$""")
    assert db.execute("SELECT n_above(0)").fetchone() == \
        db.execute("SELECT count(*) FROM heap_t WHERE i4 > 0").fetchone()
    assert db.execute("SELECT id FROM lake_t WHERE s = %s", (None,)).fetchall() == []


def test_privileges_are_checked_as_without_pushdown(tables, connect):
    db = tables
    db.execute("CREATE ROLE pd_reader LOGIN")
    try:
        db.execute("GRANT SELECT (id, g) ON lake_t TO pd_reader")
        db.execute("CREATE VIEW lake_v AS SELECT id, s FROM lake_u WHERE id < 3")
        db.execute("GRANT SELECT ON lake_v TO pd_reader")
        r = connect(user="pd_reader")
        assert r.execute("SELECT g, count(*) FROM lake_t GROUP BY g ORDER BY g").fetchall()[0] == ("a", 3)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            r.execute("SELECT s FROM lake_t")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            r.execute("SELECT count(*) FROM lake_u")
        # a subquery deep inside still checks its table
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            r.execute("SELECT id FROM lake_t t WHERE EXISTS (SELECT 1 FROM lake_u u WHERE u.id = t.id)")
        # a view reads its tables with its owner's rights
        assert r.execute("SELECT id FROM lake_v ORDER BY id").fetchall() == [(1,), (2,)]
        assert "Custom Scan (Query Pushdown)" in plan(r, "SELECT id FROM lake_v")
        # a plan cached while allowed is checked again when run after a REVOKE
        r.execute("PREPARE c AS SELECT count(*) FROM lake_t")
        r.execute("EXECUTE c")
        db.execute("REVOKE SELECT (id, g) ON lake_t FROM pd_reader")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            r.execute("EXECUTE c")
    finally:
        db.execute("DROP OWNED BY pd_reader")
        db.execute("DROP ROLE pd_reader")


def test_cancel_and_statement_timeout_stop_duckdb(tables):
    db = tables
    db.execute("SET statement_timeout = '300ms'")
    with pytest.raises(psycopg.errors.QueryCanceled):
        # 7^14 rows, each summed: hours of work unless the timeout cancels it.
        db.execute("SELECT sum(" + " + ".join(f"x{i}.id" for i in range(14)) + ") FROM " +
                   ", ".join(f"lake_t x{i}" for i in range(14)))
    db.execute("RESET statement_timeout")
    assert db.execute("SELECT count(*) FROM lake_t").fetchone() == (7,)


def test_iceberg_tables_push_down_in_their_snapshot(tables):
    db = tables
    db.execute("CREATE TABLE ice (id int, g text, n numeric(16,2)) USING iceberg")
    db.execute("INSERT INTO ice SELECT id, g, n FROM heap_t")
    q = "SELECT g, count(*), sum(n), avg(n) FROM ice GROUP BY g ORDER BY g NULLS FIRST"
    assert "Custom Scan (Query Pushdown)" in plan(db, q)
    want = db.execute(q.replace("ice", "heap_t")).fetchall()
    assert db.execute(q).fetchall() == want
    # the transaction's own uncommitted changes are part of what it reads
    db.execute("BEGIN")
    db.execute("INSERT INTO ice VALUES (100, 'z', 1.5)")
    assert db.execute("SELECT count(*) FROM ice i JOIN lake_t t USING (id)").fetchone() == (7,)
    assert db.execute("SELECT count(*) FROM ice").fetchone() == (8,)
    db.execute("ROLLBACK")
    assert db.execute("SELECT count(*) FROM ice").fetchone() == (7,)


def test_like_ships_without_an_escape_when_the_pattern_needs_none(text_db):
    """Postgres' LIKE escapes with a backslash; a constant pattern without one means the
    same without the escape character, which DuckDB matches much faster (a substring
    search). Patterns with a backslash, and non-constant ones, keep ESCAPE '\\'."""
    db = text_db
    plain = plan(db, "SELECT id FROM lake_t WHERE s NOT LIKE '%e%' AND s LIKE 'it''s%'")
    vectorized = plain.split("Vectorized SQL:")[1].split("\n")[0]
    assert "LIKE '%e%'" in vectorized and "ESCAPE" not in vectorized, vectorized
    escaped = plan(db, "SELECT id FROM lake_t WHERE s LIKE 'a\\_b%'")
    assert "ESCAPE '\\'" in escaped.split("Vectorized SQL:")[1].split("\n")[0], escaped
    by_column = plan(db, "SELECT id FROM lake_t t WHERE t.s LIKE t.g")
    assert "ESCAPE '\\'" in by_column.split("Vectorized SQL:")[1].split("\n")[0], by_column
    for sql in ["SELECT id FROM {t} WHERE s NOT LIKE '%e%' AND s LIKE 'it''s%' ORDER BY id",
                "SELECT id FROM {t} t WHERE t.s LIKE t.g ORDER BY id"]:
        same_as_heap(db, sql)
