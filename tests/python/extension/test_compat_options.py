"""Option checks with Postgres' COPY wording and the original's SQLSTATEs, and the
original's named-argument forms of lake_file functions (real Postgres via psycopg)."""

import psycopg
import pytest


@pytest.mark.parametrize("options,sqlstate,message", [
    ("delimiter 'ab'", "22023", "COPY delimiter must be a single one-byte character"),
    ("quote 'ab'", "22023", "COPY quote must be a single one-byte character"),
    ("delimiter E'\\n'", "22023", "COPY delimiter cannot be newline or carriage return"),
    ("null E'a\\r'", "22023", "COPY null representation cannot use newline or carriage return"),
    ("null 'a,b'", "22023", "COPY delimiter must not appear in the NULL specification"),
    ("null 'a\"b'", "22023", "CSV quote character must not appear in the NULL specification"),
    ("delimiter '|', quote '|'", "22023", "COPY delimiter and quote must be different"),
])
def test_csv_dialect_checks(db, options, sqlstate, message):
    for stmt in (f"CREATE FOREIGN TABLE bad (x int) SERVER pg_lake OPTIONS (path 's3://lake/x.csv', {options})",
                 f"COPY (SELECT 1) TO 's3://lake/x.csv' WITH ({options.replace(' E', ' E')})"):
        with pytest.raises(psycopg.Error) as e:
            db.execute(stmt)
        assert e.value.sqlstate == sqlstate and message in str(e.value), (stmt, str(e.value))


def test_original_sqlstates(db):
    with pytest.raises(psycopg.errors.SyntaxError) as e:
        db.execute("CREATE FOREIGN TABLE bad (x int) SERVER pg_lake OPTIONS (format 'csv')")
    assert '"path"' in str(e.value)
    with pytest.raises(psycopg.errors.SyntaxError) as e:
        db.execute("CREATE FOREIGN TABLE bad (x int) SERVER pg_lake OPTIONS (path 's3://lake/x.json', header 'true')")
    assert '"header"' in str(e.value)


def test_duplicate_copy_column_list(db, duck, s3url):
    duck.execute(f"COPY (SELECT 1 AS a, 2 AS b) TO '{s3url}/d.parquet'")
    db.execute("CREATE TABLE d (a int, b int)")
    with pytest.raises(psycopg.errors.DuplicateColumn) as e:
        db.execute(f"COPY d (a, a) FROM '{s3url}/d.parquet'")
    assert 'column "a" specified more than once' in str(e.value)


def test_named_arguments_of_lake_file_functions(db, duck, s3url):
    duck.execute(f"COPY (SELECT range AS a, 'x' || range AS b FROM range(5)) TO '{s3url}/data' "
                 "(FORMAT csv, HEADER false, COMPRESSION gzip)")
    rows = db.execute("SELECT column_name, column_type FROM lake_file.preview(%s, format => 'csv', "
                      "compression => 'gzip')", (f"{s3url}/data",)).fetchall()
    assert [t for _, t in rows] == ["bigint", "text"]
    assert db.execute("SELECT lake_file.exists(path => %s), lake_file.size(path => %s) > 0",
                      (f"{s3url}/data", f"{s3url}/data")).fetchone() == (True, True)
    assert db.execute("SELECT count(*) FROM lake_file.list(pattern => %s)", (f"{s3url}/*",)).fetchone() == (1,)


@pytest.mark.parametrize("value,why", [
    ("'NaN'::numeric", "has no such value"),
    ("'Infinity'::numeric", "has no such value"),
    ("1e35::numeric", "at most 29 digits before the decimal point"),
    ("'NaN'::numeric(10,2)", "DECIMAL(10,2)"),
])
def test_numeric_values_a_file_cannot_hold_name_the_column(db, s3url, value, why):
    with pytest.raises(psycopg.errors.NumericValueOutOfRange) as e:
        db.execute(f"COPY (SELECT 1 AS ok, {value} AS amount) TO '{s3url}/n.parquet'")
    assert 'column "amount"' in str(e.value) and why in str(e.value), str(e.value)
