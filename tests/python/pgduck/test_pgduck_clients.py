"""pgduck_server against real clients: psycopg (simple and extended protocol,
server-side binding, prepared statements), psql, and S3 through moto."""

import datetime as dt
import decimal
import subprocess
import uuid

import psycopg
import pytest
from psycopg import ClientCursor



@pytest.fixture
def conn(pgduck):
    with psycopg.connect(pgduck["conninfo"], autocommit=True) as c:
        yield c


TYPED_VALUES = [
    ("true", True),
    ("42::smallint", 42),
    ("(-7)::integer", -7),
    ("9223372036854775807::bigint", 9223372036854775807),
    ("18446744073709551615::ubigint", 18446744073709551615),
    ("1.5::double", 1.5),
    ("'x y'", "x y"),
    ("'\\x00\\xff'::blob", b"\x00\xff"),
    ("date '2024-02-29'", dt.date(2024, 2, 29)),
    ("time '23:59:59.999999'", dt.time(23, 59, 59, 999999)),
    ("timestamp '2000-01-01 00:00:00.5'", dt.datetime(2000, 1, 1, 0, 0, 0, 500000)),
    ("timestamptz '2024-06-01 12:00:00+02'", dt.datetime(2024, 6, 1, 10, 0, tzinfo=dt.timezone.utc)),
    ("interval '3 days 1 hour'", dt.timedelta(days=3, hours=1)),
    ("'6a1f1e3c-0a3b-4b7a-9c55-3c8f3b2b8a11'::uuid", uuid.UUID("6a1f1e3c-0a3b-4b7a-9c55-3c8f3b2b8a11")),
    ("'{\"a\": 1}'::json", {"a": 1}),
    ("12345678901234567890.123456789::decimal(38,9)", decimal.Decimal("12345678901234567890.123456789")),
    ("[1, 2, NULL]", [1, 2, None]),
    ("['a', 'b c']", ["a", "b c"]),
    ("NULL::integer", None),
]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_types_decode_value_by_value(conn, binary):
    cur = conn.cursor(binary=binary)
    for expr, expected in TYPED_VALUES:
        got = cur.execute(f"SELECT {expr}").fetchone()[0]
        if isinstance(expected, dt.datetime) and expected.tzinfo:
            assert got == expected, expr
        else:
            assert got == expected, f"{expr}: {got!r}"


def test_client_side_binding_uses_the_simple_protocol(conn):
    cur = ClientCursor(conn)
    cur.execute("CREATE TABLE t_simple (id INTEGER, name VARCHAR)")
    cur.execute("INSERT INTO t_simple VALUES (%s, %s), (%s, %s)", (1, "o'hara", 2, None))
    assert cur.rowcount == 2
    assert cur.execute("SELECT name FROM t_simple ORDER BY id").fetchall() == [("o'hara",), (None,)]


def test_server_side_binding_and_prepared_statement_reuse(conn):
    conn.execute("CREATE TABLE t_bind (id INTEGER, ts TIMESTAMP, amount DECIMAL(12,2))")
    for i in range(10):
        conn.execute("INSERT INTO t_bind VALUES (%s, %s, %s)",
                     (i, dt.datetime(2024, 1, 1) + dt.timedelta(days=i), decimal.Decimal(f"{i}.25")),
                     prepare=True)
    q = "SELECT count(*), sum(amount) FROM t_bind WHERE ts >= %s AND id < %s"
    for cutoff, limit, count in [(dt.datetime(2024, 1, 5), 100, 6), (dt.datetime(2024, 1, 1), 3, 3)]:
        got = conn.execute(q, (cutoff, limit), prepare=True).fetchone()
        assert got[0] == count
    assert conn.execute("SELECT %s::varchar || %s::varchar", ("a", "b")).fetchone() == ("ab",)


def test_errors_have_sqlstates_and_the_session_survives(conn):
    with pytest.raises(psycopg.errors.UndefinedTable):
        conn.execute("SELECT * FROM missing")
    with pytest.raises(psycopg.errors.SyntaxError):
        conn.execute("SELEC 1")
    assert conn.execute("SELECT 1").fetchone() == (1,)
    conn.autocommit = False
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        conn.execute("SELECT 'x'::integer")
    conn.rollback()
    assert conn.execute("SELECT 2").fetchone() == (2,)


def test_transmit_read_by_psycopg_copy(conn):
    # One CopyData per DuckDB batch (several rows each), as the original sends them.
    with conn.cursor().copy("TRANSMIT SELECT i, i * 2 FROM range(5000) t(i)") as copy:
        data = b"".join(bytes(chunk) for chunk in copy)
    lines = data.decode().splitlines()
    assert lines == [f"{i}\t{i * 2}" for i in range(5000)]


def psql(pgduck, *args, stdin=None):
    return subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", pgduck["dir"], "-p", str(pgduck["port"]),
         "-U", "test", "-d", "duck", *args],
        capture_output=True, text=True, input=stdin, timeout=60,
    )


def test_psql_queries_and_transmit(pgduck):
    out = psql(pgduck, "-At", "-c", "SELECT 1 AS a, 'two' AS b")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1|two"
    out = psql(pgduck, "-c", "TRANSMIT SELECT i, NULL AS n, 'tab\there' FROM range(3) t(i)")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "0\t\\N\ttab\\there\n1\t\\N\ttab\\there\n2\t\\N\ttab\\there\n"
    out = psql(pgduck, "-c", "SELECT * FROM nope")
    assert out.returncode != 0 and "does not exist" in out.stderr


def test_s3_round_trip_with_credentials_from_the_environment(conn, moto):
    prefix = f"s3://{moto['bucket']}/{uuid.uuid4().hex[:8]}"
    conn.execute(f"COPY (SELECT i AS id, 'row ' || i AS label FROM range(1000) t(i)) TO '{prefix}/part-1.parquet'")
    conn.execute(f"COPY (SELECT 1000 AS id, 'last' AS label) TO '{prefix}/part-2.parquet'")
    got = conn.execute(f"SELECT count(*), max(id) FROM read_parquet('{prefix}/*.parquet')").fetchone()
    assert got == (1001, 1000)
    files = [r[0] for r in conn.execute(f"SELECT file FROM glob('{prefix}/*') ORDER BY file").fetchall()]
    assert files == [f"{prefix}/part-1.parquet", f"{prefix}/part-2.parquet"]
    listed = moto["s3"].list_objects_v2(Bucket=moto["bucket"], Prefix=prefix.split("/", 3)[3])
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]) == ["part-1.parquet", "part-2.parquet"]


def test_s3_with_a_secret_created_by_the_client(start_pgduck, moto):
    server = start_pgduck("duck-nocreds", {})
    with psycopg.connect(server.conninfo, autocommit=True) as c:
        endpoint = moto["endpoint"].removeprefix("http://")
        c.execute(f"""CREATE SECRET s3test (TYPE s3, KEY_ID '{moto["key"]}', SECRET '{moto["secret"]}',
                      ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')""")
        url = f"s3://{moto['bucket']}/client-secret/{uuid.uuid4().hex[:8]}.csv"
        c.execute(f"COPY (SELECT 'a' AS x UNION ALL SELECT 'b') TO '{url}' (HEADER)")
        assert c.execute(f"SELECT x FROM read_csv('{url}') ORDER BY x").fetchall() == [("a",), ("b",)]
    # The key appears nowhere in the server's log.
    assert moto["secret"] not in server.log.read_text()


def test_secret_values_never_reach_the_log_or_arguments(pgduck, moto):
    assert moto["secret"] not in pgduck["log"].read_text()
    cmdline = open(f"/proc/{pgduck['proc'].pid}/cmdline", "rb").read().decode(errors="replace")
    assert moto["secret"] not in cmdline and moto["key"] not in cmdline


def test_local_paths_round_trip(conn, workdir):
    path = workdir / "local-out.parquet"
    conn.execute(f"COPY (SELECT 42 AS answer) TO '{path}'")
    assert conn.execute(f"SELECT answer FROM '{path}'").fetchone() == (42,)


def test_table_functions_take_bound_parameters(conn, workdir):
    """read_csv($1) cannot be described before its parameter is known: Describe of the
    portal binds it with the client's value, so the columns are right and reuse works."""
    path = workdir / "bound.csv"
    path.write_text("a,b\n1,x\n2,y\n")
    q = "SELECT * FROM read_csv(%s) WHERE a > %s ORDER BY a"
    for minimum, expected in [(0, [(1, "x"), (2, "y")]), (1, [(2, "y")])]:
        cur = conn.execute(q, (str(path), minimum), prepare=True)
        assert [d.name for d in cur.description] == ["a", "b"]
        assert cur.fetchall() == expected
    # The server's entity-tag function (lake_file.list's etag), for a local file.
    rows = conn.execute("SELECT path, etag FROM pg_lake_file_etags(%s)", (str(path),)).fetchall()
    assert len(rows) == 1 and rows[0][0] == str(path) and rows[0][1]
    path.write_text("a,b\n1,x\n2,y\n3,z\n")
    again = conn.execute("SELECT etag FROM pg_lake_file_etags(%s)", (str(path),)).fetchone()[0]
    assert again != rows[0][1]


def test_copy_from_stdin_with_psycopg(conn):
    conn.execute("CREATE TABLE copied (id INTEGER, label VARCHAR)")
    with conn.cursor().copy("COPY copied FROM STDIN (FORMAT csv)") as copy:
        for i in range(5000):
            copy.write(f"{i},label {i}\n")
    assert conn.execute("SELECT count(*), min(label) FROM copied").fetchone() == (5000, "label 0")
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        with conn.cursor().copy("COPY copied FROM STDIN (FORMAT csv)") as copy:
            copy.write("x,y\n")
    assert conn.execute("SELECT count(*) FROM copied").fetchone() == (5000,)
