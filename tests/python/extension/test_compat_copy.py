"""COPY and foreign tables behave as the original pg_lake's (and Postgres' own COPY): file
columns by position, CSV header off by default, CSV values parsed by Postgres, COPY FROM
... WHERE, FREEZE and HEADER MATCH. Real Postgres, pgduck_server and moto via psycopg."""

import psycopg
import pytest


def test_copy_from_matches_columns_by_position(db, duck, s3url):
    duck.execute(f"COPY (SELECT 1 AS id, 'first' AS \"desc\" UNION ALL SELECT 2, 'second') TO '{s3url}/d.parquet'")
    db.execute("CREATE TABLE t (id int, description text, extra int)")
    db.execute(f"COPY t (id, description) FROM '{s3url}/d.parquet'")
    assert db.execute("SELECT id, description, extra FROM t ORDER BY id").fetchall() == \
        [(1, "first", None), (2, "second", None)]
    # By name on request: the file's "desc" is not a column of the list.
    with pytest.raises(psycopg.errors.UndefinedColumn):
        db.execute(f"COPY t (id, description) FROM '{s3url}/d.parquet' WITH (match_by 'name')")
    # Too few or too many target columns for the file is an error that says so.
    with pytest.raises(psycopg.errors.UndefinedColumn) as e:
        db.execute(f"COPY t FROM '{s3url}/d.parquet'")
    assert "by position" in str(e.value)


def test_csv_foreign_table_reads_by_position_without_sniffing_a_header(db, localdir):
    path = localdir / "h.csv"
    path.write_text("identifier,label\n1,one\n2,two\n")
    db.execute(f"CREATE FOREIGN TABLE with_header (id int, name text) SERVER pg_lake "
               f"OPTIONS (path '{path}', header 'true')")
    assert db.execute("SELECT id, name FROM with_header ORDER BY id").fetchall() == [(1, "one"), (2, "two")]
    # header defaults to false, as in Postgres: the first line is data.
    db.execute(f"CREATE FOREIGN TABLE no_header (a text, b text) SERVER pg_lake OPTIONS (path '{path}')")
    assert db.execute("SELECT a FROM no_header").fetchall() == [("identifier",), ("1",), ("2",)]
    # null_padding does not turn the first line into a header either.
    ragged = localdir / "r.csv"
    ragged.write_text("1,x\n2\n")
    db.execute(f"CREATE FOREIGN TABLE padded (a int, b text) SERVER pg_lake "
               f"OPTIONS (path '{ragged}', null_padding 'true')")
    assert db.execute("SELECT a, b FROM padded ORDER BY a").fetchall() == [(1, "x"), (2, None)]


def test_csv_values_are_parsed_by_postgres(db, localdir):
    path = localdir / "n.csv"
    path.write_text('123456789012345678901234.99,"",\n1.5,x,2024-02-29\n10,y,\n9,z,\n')
    db.execute(f"CREATE FOREIGN TABLE nums (n numeric(39,2), s text, d date) SERVER pg_lake OPTIONS (path '{path}')")
    rows = db.execute("SELECT n::text, s, d::text FROM nums ORDER BY nums.n").fetchall()
    assert rows[-1] == ("123456789012345678901234.99", "", None)
    assert rows[0] == ("1.50", "x", "2024-02-29")
    # A quoted empty field is an empty string, an unquoted one NULL, as in Postgres' CSV.
    assert db.execute("SELECT count(*) FILTER (WHERE s = ''), count(*) FILTER (WHERE d IS NULL) FROM nums"
                      ).fetchone() == (1, 3)
    # Conditions on non-text CSV columns are Postgres' (numeric order, not string order).
    assert db.execute("SELECT n FROM nums WHERE n > 5 AND n < 100 ORDER BY n").fetchall() == [(9,), (10,)]
    db.execute("CREATE TABLE heap (n numeric(39,2), s text, d date)")
    db.execute(f"COPY heap FROM '{path}' WITH (format csv)")
    assert db.execute("SELECT max(n)::text FROM heap").fetchone() == ("123456789012345678901234.99",)


def test_copy_from_where(db, duck, s3url):
    duck.execute(f"COPY (SELECT range AS x FROM range(10)) TO '{s3url}/w.parquet'")
    db.execute("CREATE TABLE w (x int)")
    assert db.execute(f"COPY w FROM '{s3url}/w.parquet' WHERE x % 3 = 0").rowcount == 4
    assert db.execute("SELECT array_agg(x ORDER BY x) FROM w").fetchone() == ([0, 3, 6, 9],)
    with pytest.raises(psycopg.errors.UndefinedColumn):
        db.execute(f"COPY w FROM '{s3url}/w.parquet' WHERE nope > 1")


def test_copy_freeze_and_header_match(db, duck, s3url):
    duck.execute(f"COPY (SELECT 1 AS a, 'x' AS b) TO '{s3url}/f.parquet'")
    duck.execute(f"COPY (SELECT 1 AS a, 'x' AS b) TO '{s3url}/f.csv' (HEADER true)")
    with db.transaction():
        db.execute("CREATE TABLE frozen (a int, b text)")
        db.execute(f"COPY frozen FROM '{s3url}/f.parquet' WITH (freeze)")
    assert db.execute("SELECT count(*) FROM frozen").fetchone() == (1,)
    # Postgres' own check and wording for a table not created in this transaction.
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as e:
        db.execute(f"COPY frozen FROM '{s3url}/f.parquet' WITH (freeze)")
    assert "COPY FREEZE" in str(e.value)
    # HEADER MATCH: the header names must be the table's columns.
    db.execute("CREATE TABLE by_header (b text, a int)")
    db.execute(f"COPY by_header FROM '{s3url}/f.csv' WITH (header match)")
    assert db.execute("SELECT a, b FROM by_header").fetchall() == [(1, "x")]
    db.execute("CREATE TABLE other (c int, d text)")
    with pytest.raises(psycopg.errors.UndefinedColumn):
        db.execute(f"COPY other FROM '{s3url}/f.csv' WITH (header match)")


def test_bytea_and_json_in_text_files(db, duck, s3url):
    db.execute("CREATE TABLE b (i int, raw bytea, doc jsonb)")
    db.execute("""INSERT INTO b VALUES (1, '\\x0001ff', '{"k": [1, 2]}'), (2, '', '"text"'), (3, NULL, NULL)""")
    for ext in ("csv", "json"):
        db.execute(f"COPY b TO '{s3url}/b.{ext}'")
        db.execute("CREATE TABLE back (i int, raw bytea, doc jsonb)")
        db.execute(f"COPY back FROM '{s3url}/b.{ext}'")
        assert db.execute("SELECT i, raw, doc FROM back ORDER BY i").fetchall() == \
            db.execute("SELECT i, raw, doc FROM b ORDER BY i").fetchall(), ext
        db.execute("DROP TABLE back")
    # Postgres' hex form in the files; JSON documents as JSON values, not strings.
    assert duck.execute(f"SELECT raw FROM read_csv('{s3url}/b.csv', header = false, "
                        "columns = {'i': 'INTEGER', 'raw': 'VARCHAR', 'doc': 'VARCHAR'}) WHERE i = 1"
                        ).fetchone() == ("\\x0001ff",)
    assert duck.execute(f"SELECT json_type(doc) FROM read_json('{s3url}/b.json', format = 'newline_delimited', "
                        "columns = {'i': 'INTEGER', 'raw': 'VARCHAR', 'doc': 'JSON'}) WHERE i = 1").fetchone() == ("OBJECT",)


def test_create_table_from_a_file(db, duck, s3url):
    duck.execute(f"COPY (SELECT 1 AS \"ID\", 'one' AS Label, [1, 2] AS list UNION ALL SELECT 2, 'two', []) "
                 f"TO '{s3url}/src.parquet'")
    db.execute(f"CREATE TABLE defined () WITH (definition_from = '{s3url}/src.parquet')")
    assert db.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                      "WHERE attrelid = 'defined'::regclass AND attnum > 0 ORDER BY attnum").fetchall() == \
        [("id", "integer"), ("label", "text"), ("list", "integer[]")]
    assert db.execute("SELECT count(*) FROM defined").fetchone() == (0,)
    db.execute(f"CREATE TABLE loaded () WITH (load_from = '{s3url}/src.parquet', fillfactor = 90)")
    assert db.execute("SELECT id, label, list FROM loaded ORDER BY id").fetchall() == \
        [(1, "one", [1, 2]), (2, "two", [])]
    assert db.execute("SELECT reloptions FROM pg_class WHERE oid = 'loaded'::regclass").fetchone() == \
        (["fillfactor=90"],)
    duck.execute(f"COPY (SELECT 5 AS n, 'five' AS w) TO '{s3url}/src.csv' (HEADER true)")
    db.execute(f"CREATE TABLE from_csv (n int, w text) WITH (load_from = '{s3url}/src.csv', header = 'true')")
    assert db.execute("SELECT n, w FROM from_csv").fetchall() == [(5, "five")]
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        db.execute(f"CREATE TABLE bad (x int) WITH (definition_from = '{s3url}/src.parquet')")
    # The same privilege as COPY FROM: a role without lake_read learns nothing.
    db.execute("CREATE ROLE no_lake LOGIN")
    db.execute("GRANT CREATE ON SCHEMA public TO no_lake")
    try:
        with psycopg.connect(host=db.info.host, port=db.info.port, user="no_lake", dbname=db.info.dbname,
                             autocommit=True) as c:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(f"CREATE TABLE sneaky () WITH (definition_from = '{s3url}/src.parquet')")
    finally:
        db.execute("DROP OWNED BY no_lake")
        db.execute("DROP ROLE no_lake")


def test_struct_keys_that_need_quoting_and_zero_column_tables(db, duck, s3url):
    duck.execute(f"""COPY (SELECT {{'my key': 1, 'Other"Key': 'x', 'order': 2.5}} AS s) TO '{s3url}/q.parquet'""")
    db.execute(f"CREATE FOREIGN TABLE q () SERVER pg_lake OPTIONS (path '{s3url}/q.parquet')")
    assert db.execute("SELECT (s).\"my key\", (s).\"Other\"\"Key\", (s).\"order\" FROM q").fetchone() == \
        (1, "x", 2.5)
    db.execute("CREATE TABLE qh AS SELECT * FROM q WHERE false")
    db.execute(f"COPY qh FROM '{s3url}/q.parquet'")
    assert db.execute("SELECT (s).\"my key\" FROM qh").fetchone() == (1,)
    db.execute("CREATE TABLE nothing ()")
    db.execute("INSERT INTO nothing DEFAULT VALUES")
    for ext in ("csv", "json", "parquet"):
        with pytest.raises(psycopg.errors.FeatureNotSupported) as e:
            db.execute(f"COPY nothing TO '{s3url}/nothing.{ext}'")
        assert "has no columns" in str(e.value)


def test_filename_option_needs_its_column(db, s3url):
    with pytest.raises(psycopg.errors.InvalidColumnReference) as e:
        db.execute(f"CREATE FOREIGN TABLE f (a int) SERVER pg_lake OPTIONS (path '{s3url}/x.parquet', filename 'true')")
    assert "_filename" in str(e.value)
    db.execute(f"CREATE FOREIGN TABLE f (_filename text, a int) SERVER pg_lake "
               f"OPTIONS (path '{s3url}/x.parquet', filename 'true')")


def test_json_columns_of_foreign_tables_get_json_text(db, duck, s3url):
    duck.execute(f"""COPY (SELECT 1 AS i, {{'k': [1, 2], 'n': 'x'}} AS doc, 'plain' AS txt
                       UNION ALL SELECT 2, NULL, NULL) TO '{s3url}/j.parquet'""")
    db.execute(f"CREATE FOREIGN TABLE j (i int, doc jsonb, txt jsonb) SERVER pg_lake OPTIONS (path '{s3url}/j.parquet')")
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        # 'plain' is not JSON text: Postgres says so, as it would for the same text anywhere.
        db.execute("SELECT txt FROM j").fetchall()
    assert db.execute("SELECT doc FROM j ORDER BY i").fetchall() == [({"k": [1, 2], "n": "x"},), (None,)]


def test_copy_to_stdout_in_lake_formats(db):
    import io
    import json as jsonlib

    import pyarrow.parquet as pq
    db.execute("CREATE TABLE s AS SELECT g AS id, 'v' || g AS val FROM generate_series(1, 5000) g")
    with db.cursor() as cur:
        with cur.copy("COPY (SELECT id, val FROM s WHERE id <= 4000) TO STDOUT WITH (format 'parquet')") as copy:
            data = b"".join(bytes(b) for b in copy)
        assert cur.rowcount == 4000
    table = pq.read_table(io.BytesIO(data))
    assert table.num_rows == 4000 and table.column_names == ["id", "val"]
    assert sum(table.column("id").to_pylist()) == 4000 * 4001 // 2
    with db.cursor() as cur:
        with cur.copy("COPY s TO STDOUT WITH (format 'json')") as copy:
            text = b"".join(bytes(b) for b in copy).decode()
    rows = [jsonlib.loads(line) for line in text.splitlines()]
    assert len(rows) == 5000 and rows[0] == {"id": 1, "val": "v1"}
    # Postgres' own formats stay Postgres'.
    with db.cursor() as cur:
        with cur.copy("COPY (SELECT 1 AS a) TO STDOUT WITH (format csv)") as copy:
            assert b"".join(bytes(b) for b in copy) == b"1\n"
