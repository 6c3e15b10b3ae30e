"""COPY to and from lake URLs: formats, compression, options, errors."""

import os
import uuid
from pathlib import Path

import psycopg
import pytest


@pytest.fixture
def source(db):
    db.execute("""CREATE TABLE src AS SELECT i AS id, 'v' || i AS val, (i % 2 = 0) AS even
                  FROM generate_series(1, 1000) i""")
    return db


def readback(duck, url, extra=""):
    return duck.execute(f"SELECT count(*), sum(id), max(val) FROM '{url}' {extra}").fetchone()


@pytest.mark.parametrize("name,with_", [
    ("t.parquet", ""),
    ("t.csv", "WITH (header true)"),
    ("t.json", ""),
    ("t.csv.gz", "WITH (header true)"),
    ("t.json.zst", ""),
    ("t.data", "WITH (format parquet, compression zstd)"),
    ("t.parquet", "WITH (compression snappy)"),
])
def test_copy_table_to_s3_and_back(source, duck, s3url, name, with_):
    url = f"{s3url}/{name}"
    res = source.execute(f"COPY src TO '{url}' {with_}")
    assert res.rowcount == 1000
    fmt = "parquet" if "parquet" in with_ else None
    reader = f"read_parquet('{url}')" if fmt else f"'{url}'"
    assert duck.execute(f"SELECT count(*), sum(id), max(val) FROM {reader}").fetchone() == (1000, 500500, "v999")
    source.execute("CREATE TABLE dst (LIKE src)")
    res = source.execute(f"COPY dst FROM '{url}' {with_}")
    assert res.rowcount == 1000
    assert source.execute("SELECT count(*), sum(id), max(val), count(*) FILTER (WHERE even) FROM dst").fetchone() == \
        (1000, 500500, "v999", 500)


def test_copy_query_and_lake_table_to(source, duck, s3url):
    source.execute(f"COPY (SELECT id, val FROM src WHERE id <= 10 ORDER BY id) TO '{s3url}/q.parquet'")
    assert duck.execute(f"SELECT count(*), max(id) FROM '{s3url}/q.parquet'").fetchone() == (10, 10)
    source.execute(f"CREATE FOREIGN TABLE lake (id int, val text) SERVER pg_lake OPTIONS (path '{s3url}/q.parquet')")
    source.execute(f"COPY lake TO '{s3url}/from_lake.csv' WITH (header true)")
    assert duck.execute(f"SELECT sum(id) FROM '{s3url}/from_lake.csv'").fetchone() == (55,)
    source.execute(f"COPY lake (val) TO '{s3url}/cols.parquet'")
    assert duck.execute(f"DESCRIBE SELECT * FROM '{s3url}/cols.parquet'").fetchall()[0][0] == "val"


def test_copy_to_keeps_awkward_text_exact(db, duck, s3url):
    """Rows travel to DuckDB as CSV: separators, quotes, line breaks, empty strings, the
    text \\N and values larger than DuckDB's default line limit come out unchanged."""
    values = ["plain", "", None, "a,b", 'say "hi"', '"', "two\nlines\r\n", "\\N", "tab\there",
              "ünïcødé ✓", "x" * (3 * 1024 * 1024)]
    db.execute("CREATE TABLE awkward (id int, t text, arr text[])")
    with db.cursor() as cur:
        for i, v in enumerate(values):
            cur.execute("INSERT INTO awkward VALUES (%s, %s, %s)", (i, v, None if v is None else [v, None, ""]))
    url = f"{s3url}/awkward.parquet"
    assert db.execute(f"COPY awkward TO '{url}'").rowcount == len(values)
    got = duck.execute(f"SELECT id, t, arr FROM '{url}' ORDER BY id").fetchall()
    assert got == [(i, v, None if v is None else [v, None, ""]) for i, v in enumerate(values)]


def test_csv_options_on_copy_to(source, duck, s3url):
    url = f"{s3url}/opts.csv"
    source.execute(f"""COPY (SELECT id, CASE WHEN id = 1 THEN NULL ELSE val END AS val FROM src WHERE id <= 3 ORDER BY id)
        TO '{url}' WITH (format csv, header, delimiter '|', quote '"', null 'NIL', force_quote (val))""")
    text = duck.execute(f"SELECT content FROM read_text('{url}')").fetchone()[0]
    assert text.splitlines()[1:] == ["1|NIL", '2|"v2"', '3|"v3"']
    source.execute("CREATE TABLE back (id int, val text)")
    source.execute(f"COPY back FROM '{url}' WITH (header true, delimiter '|', null 'NIL')")
    assert source.execute("SELECT * FROM back ORDER BY id").fetchall() == [(1, None), (2, "v2"), (3, "v3")]


def test_local_paths(source, localdir):
    source.execute(f"COPY src TO '{localdir}/local.parquet'")
    source.execute("CREATE TABLE dst (LIKE src)")
    source.execute(f"COPY dst FROM '{localdir}/local.parquet'")
    assert source.execute("SELECT count(*) FROM dst").fetchone() == (1000,)
    # plain CSV on a local path stays Postgres' own COPY
    source.execute(f"COPY src TO '{localdir}/plain.csv' WITH (format csv)")
    assert (localdir / "plain.csv").read_text().startswith("1,v1,f\n")


def test_local_paths_need_file_roles(connect, source, localdir, s3url):
    source.execute("CREATE ROLE writer LOGIN IN ROLE lake_read_write")
    source.execute("GRANT SELECT, INSERT ON src TO writer")
    try:
        w = connect(user="writer")
        w.execute(f"COPY src TO '{s3url}/by_writer.parquet'")
        w.execute(f"COPY src FROM '{s3url}/by_writer.parquet'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
            w.execute(f"COPY src TO '{localdir}/by_writer.parquet'")
        assert "pg_write_server_files" in str(e.value)
    finally:
        source.execute("DROP OWNED BY writer")
        source.execute("DROP ROLE writer")


def test_copy_needs_lake_roles_and_table_privileges(connect, source, s3url):
    source.execute(f"COPY src TO '{s3url}/priv.parquet'")
    source.execute("CREATE ROLE nobody LOGIN")
    source.execute("CREATE ROLE reader LOGIN IN ROLE lake_read")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
            connect(user="nobody").execute(f"COPY (SELECT 1) TO '{s3url}/x.parquet'")
        assert "lake_write" in str(e.value)
        reader = connect(user="reader")
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
            reader.execute(f"COPY src FROM '{s3url}/priv.parquet'")
        assert "src" in str(e.value)
    finally:
        source.execute("DROP OWNED BY nobody, reader")
        source.execute("DROP ROLE nobody, reader")


def test_copy_from_mismatched_columns_loads_nothing(source, duck, s3url):
    duck.execute(f"COPY (SELECT 1 AS id, 'x' AS other) TO '{s3url}/mismatch.parquet'")
    source.execute("CREATE TABLE dst (id int, val text)")
    # By name (on request), a file column the table lacks is an error naming both.
    with pytest.raises(psycopg.errors.UndefinedColumn) as e:
        source.execute(f"COPY dst FROM '{s3url}/mismatch.parquet' WITH (match_by 'name')")
    assert '"val"' in str(e.value) and "mismatch.parquet" in str(e.value)
    duck.execute(f"COPY (SELECT 1 AS a, 2 AS b, 3 AS c) TO '{s3url}/three.csv' (HEADER false)")
    with pytest.raises(psycopg.errors.UndefinedColumn) as e:
        source.execute(f"COPY dst FROM '{s3url}/three.csv' WITH (header false)")
    assert "3 columns" in str(e.value)
    assert source.execute("SELECT count(*) FROM dst").fetchone() == (0,)


def test_copy_from_loads_what_files_hold_not_their_directories(source, duck, s3url):
    """A file under key=value directories loads its own columns; only foreign tables
    turn the directories into columns."""
    duck.execute(f"COPY (SELECT 7 AS id, 'seven' AS val) TO '{s3url}/day=2024-01-01/part=3/a.parquet'")
    source.execute("CREATE TABLE dst (id int, val text)")
    assert source.execute(f"COPY dst FROM '{s3url}/day=2024-01-01/part=3/a.parquet'").rowcount == 1
    assert source.execute("SELECT * FROM dst").fetchall() == [(7, "seven")]
    source.execute(f"CREATE FOREIGN TABLE hive () SERVER pg_lake OPTIONS (path '{s3url}/*/*/*.parquet')")
    assert source.execute("SELECT id, part FROM hive").fetchall() == [(7, 3)]
    preview = [r[0] for r in source.execute(
        "SELECT column_name FROM lake_file.preview(%s)", (f"{s3url}/day=2024-01-01/part=3/a.parquet",))]
    assert preview == ["id", "val", "day", "part"]


def test_copy_from_bad_values_loads_nothing(source, duck, s3url):
    duck.execute(f"""COPY (SELECT * FROM (VALUES (1, '10'), (2, '20'), (3, 'oops'), (4, '40')) t(id, val))
                     TO '{s3url}/badval.parquet'""")
    source.execute("CREATE TABLE dst (id int, val int)")
    with pytest.raises(psycopg.errors.InvalidTextRepresentation) as e:
        source.execute(f"COPY dst FROM '{s3url}/badval.parquet'")
    assert '"oops"' in str(e.value) and "val" in str(e.value)
    assert source.execute("SELECT count(*) FROM dst").fetchone() == (0,)
    # constraints are checked like any COPY
    source.execute("CREATE TABLE pos (id int, val text CHECK (val <> '20'))")
    with pytest.raises(psycopg.errors.CheckViolation):
        source.execute(f"COPY pos FROM '{s3url}/badval.parquet'")
    assert source.execute("SELECT count(*) FROM pos").fetchone() == (0,)
    # the session and pgduck_server keep working
    assert source.execute("SELECT 1").fetchone() == (1,)


def test_copy_into_lake_table_is_refused(source, s3url):
    source.execute(f"COPY src TO '{s3url}/x.parquet'")
    source.execute(f"CREATE FOREIGN TABLE lake (id int, val text, even bool) SERVER pg_lake OPTIONS (path '{s3url}/x.parquet')")
    with pytest.raises(psycopg.Error) as e:
        source.execute(f"COPY lake FROM '{s3url}/x.parquet'")
    assert '"lake"' in str(e.value)


@pytest.mark.parametrize("stmt,culprit", [
    ("COPY src TO 's3://lake/x.parquet' WITH (freeze true)", '"freeze"'),
    ("COPY src TO 's3://lake/x.csv' WITH (delimiter 'ab')", 'COPY delimiter must be a single one-byte character'),
    ("COPY src TO 's3://lake/x.csv' WITH (header 'maybe')", "header"),
    ("COPY src TO 's3://lake/x.parquet' WITH (header true)", '"header"'),
    ("COPY src TO 's3://lake/x.parquet' WITH (format 'avro')", '"format": "avro"'),
    ("COPY src TO 'az://c/x.parquet'", '"az"'),
    ("COPY src TO 'https://example.com/x.parquet'", '"https"'),
    ("COPY src FROM 's3://lake/x.parquet' WITH (force_quote (val))", '"force_quote"'),
    ("COPY src TO 's3://lake/x.csv' WITH (null_padding true)", '"null_padding"'),
    ("COPY src FROM 's3://lake/does/not/exist.parquet'", "exist.parquet"),
])
def test_bad_copy_input(source, stmt, culprit):
    with pytest.raises(psycopg.Error) as e:
        source.execute(stmt)
    assert culprit in str(e.value)
    assert source.execute("SELECT count(*) FROM src").fetchone() == (1000,)


def test_statement_timeout_cancels_copy(db, duck, localdir, s3url):
    big = localdir / "big.parquet"
    duck.execute(f"COPY (SELECT range AS x FROM range(20000000)) TO '{big}'")
    db.execute("CREATE TABLE sink (x bigint)")
    db.execute("SET statement_timeout = '500ms'")
    with pytest.raises(psycopg.errors.QueryCanceled):
        db.execute(f"COPY sink FROM '{big}'")
    db.execute("RESET statement_timeout")
    db.execute("INSERT INTO sink SELECT generate_series(1, 3000000)")
    db.execute("SET statement_timeout = '500ms'")
    with pytest.raises(psycopg.errors.QueryCanceled):
        db.execute(f"COPY sink TO '{s3url}/slow.parquet'")
    db.execute("RESET statement_timeout")
    assert db.execute("SELECT count(*) FROM sink").fetchone() == (3000000,)
    db.execute(f"COPY (SELECT 1 AS one) TO '{s3url}/after.parquet'")
    db.execute(f"CREATE FOREIGN TABLE after (one int) SERVER pg_lake OPTIONS (path '{s3url}/after.parquet')")
    assert db.execute("SELECT one FROM after").fetchall() == [(1,)]


@pytest.mark.parametrize("name,with_,content", [
    ("empty.csv", "", b""),
    ("header.csv", "WITH (header true)", b'id,"a,b"\n'),
    ("empty.json", "", b""),
])
def test_copy_of_zero_rows_to_object_storage_writes_a_valid_empty_file(db, duck, moto, s3url, name, with_, content):
    """DuckDB's CSV and JSON writers upload nothing for zero rows; the object is there
    anyway, as a local COPY would write it (a CSV header when asked for), and reads
    back as zero rows."""
    url = f"{s3url}/{name}"
    res = db.execute(f"""COPY (SELECT 1 AS id, 'x' AS "a,b" WHERE false) TO '{url}' {with_}""")
    assert res.rowcount == 0
    key = url.removeprefix(f"s3://{moto['bucket']}/")
    assert moto["s3"].get_object(Bucket=moto["bucket"], Key=key)["Body"].read() == content
    if name.endswith(".csv") and content:
        assert duck.execute(f"SELECT count(*) FROM read_csv('{url}', header = true)").fetchone() == (0,)
    # Compressed: a valid empty gzip stream, not an empty object.
    db.execute(f"COPY (SELECT 1 AS id WHERE false) TO '{url}.gz' {with_}")
    body = moto["s3"].get_object(Bucket=moto["bucket"], Key=key + ".gz")["Body"].read()
    import gzip
    assert gzip.decompress(body) == content.replace(b',"a,b"', b"")


def test_copy_from_stdin_in_parquet_and_json(db, connect, workdir, localdir):
    """COPY ... FROM STDIN WITH (format 'parquet' | 'json') as the original streams it
    (psql's \\copy included): the bytes go on to pgduck_server and load as the same
    file would, into heap and Iceberg tables; CopyFail and missing privileges are
    Postgres' errors, and the session goes on."""
    import subprocess

    import pyarrow as pa
    import pyarrow.parquet as pq
    parquet = workdir / "stdin.parquet"
    pq.write_table(pa.table({"id": pa.array(range(1, 2001), pa.int64()),
                             "label": [f"r{i}" for i in range(1, 2001)]}), parquet, row_group_size=500)
    data = parquet.read_bytes()
    db.execute("CREATE TABLE h (id bigint, description text)")
    with db.cursor().copy("COPY h FROM STDIN WITH (format 'parquet')") as copy:
        for at in range(0, len(data), 7000):  # many CopyData messages
            copy.write(data[at:at + 7000])
    assert db.execute("SELECT count(*), sum(id), max(description) FROM h").fetchone() == (2000, 2001000, "r999")
    # Iceberg, and a column list.
    db.execute("CREATE TABLE ice (id bigint, description text, extra int) USING iceberg")
    with db.cursor().copy("COPY ice (id, description) FROM STDIN WITH (format parquet)") as copy:
        copy.write(data)
    assert db.execute("SELECT count(*), sum(id), count(extra) FROM ice").fetchone() == (2000, 2001000, 0)
    # JSON, newline-delimited.
    db.execute("CREATE TABLE j (id int, tags text[], doc jsonb)")
    with db.cursor().copy("COPY j FROM STDIN WITH (format 'json')") as copy:
        copy.write(b'{"id": 1, "tags": ["a", "b"], "doc": {"k": [1, 2]}}\n{"id": 2, "tags": [], "doc": null}\n')
    assert db.execute("SELECT id, tags, doc FROM j ORDER BY id").fetchall() == \
        [(1, ["a", "b"], {"k": [1, 2]}), (2, [], None)]
    # psql's \copy, the way a migrating user loads a local file.
    db.execute("TRUNCATE h")
    info = db.info
    out = subprocess.run([str(Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")) / "psql"),
                          "-h", info.host, "-p", str(info.port), "-U", info.user, "-d", info.dbname,
                          "-v", "ON_ERROR_STOP=1", "-c", f"\\copy h from '{parquet}' with (format 'parquet')"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "COPY 2000"
    assert db.execute("SELECT count(*) FROM h").fetchone() == (2000,)
    # CopyFail from the client (psycopg sends it and re-raises its own exception):
    # nothing loaded, and the session goes on.
    with pytest.raises(RuntimeError, match="the client gives up"):
        with db.cursor().copy("COPY h FROM STDIN WITH (format 'parquet')") as copy:
            copy.write(data[:100])
            raise RuntimeError("the client gives up")
    assert db.execute("SELECT count(*) FROM h").fetchone() == (2000,)
    # Bad bytes are DuckDB's error, and the session goes on.
    with pytest.raises(psycopg.Error, match="(?i)parquet"):
        with db.cursor().copy("COPY h FROM STDIN WITH (format 'parquet')") as copy:
            copy.write(b"not a parquet file")
    # Without INSERT on the table: refused before any data is taken.
    role = f"stdin_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE ROLE {role} LOGIN")
    db.execute(f"GRANT SELECT ON h TO {role}")
    other = connect(user=role)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with other.cursor().copy("COPY h FROM STDIN WITH (format 'parquet')") as copy:
            copy.write(data)
    # CSV options on a Parquet COPY are refused first, with Postgres' wording.
    with pytest.raises(psycopg.errors.SyntaxError):
        with db.cursor().copy("COPY h FROM STDIN WITH (format 'parquet', delimiter ';')") as copy:
            copy.write(data)
    assert db.execute("SELECT count(*) FROM h").fetchone() == (2000,)
    # No upload is left behind: each is deleted once loaded, a failed load's at the
    # session's next upload (or its end).
    with db.cursor().copy("COPY h FROM STDIN WITH (format 'parquet')") as copy:
        copy.write(data)
    assert db.execute("SELECT count(*) FROM h").fetchone() == (4000,)
    assert not list((workdir / "duck-cache" / "tmp").glob("copy-out-upload-*"))
