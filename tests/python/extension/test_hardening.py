"""Issue 11 (security and robustness) as seen from Postgres: who may touch which files
through every entry point, URLs that must not reach DuckDB, data that must not crash a
backend, and errors that must not leak or lose anything. Real Postgres, pgduck_server,
moto and psycopg; each test fails on the build before the fix."""

import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from lake_testing import as_postgres, free_port, unix_open, wait_for

CACHE = Path(os.environ.get("PG_LAKE_CACHE", Path.home() / ".cache/pg_lake"))
PGDUCK_BIN = Path(os.environ.get("PGDUCK_SERVER_BIN",
                                 Path(os.environ.get("CARGO_TARGET_DIR", CACHE / "target")) / "debug/pgduck_server"))
DUCKDB_EXTENSIONS = os.environ.get("PG_LAKE_DUCKDB_EXTENSIONS", str(CACHE / "duckdb/extensions"))

ROLES = ["nobody_special", "lake_reader", "lake_writer", "file_reader", "file_writer"]


@pytest.fixture
def roles(db):
    """One login role per privilege level, each able to create tables in public."""
    db.execute("CREATE ROLE nobody_special LOGIN")
    db.execute("CREATE ROLE lake_reader LOGIN IN ROLE lake_read")
    db.execute("CREATE ROLE lake_writer LOGIN IN ROLE lake_read_write")
    db.execute("CREATE ROLE file_reader LOGIN IN ROLE pg_read_server_files")
    db.execute("CREATE ROLE file_writer LOGIN IN ROLE pg_write_server_files")
    for r in ROLES:
        db.execute(f"GRANT CREATE ON SCHEMA public TO {r}")
    # Local files are for the server-file roles; they still need the server to make tables.
    db.execute("GRANT USAGE ON FOREIGN SERVER pg_lake TO file_reader, file_writer")
    yield
    for r in ROLES:
        db.execute(f"DROP OWNED BY {r}")
        db.execute(f"DROP ROLE {r}")


def outcome(conn, sql, params=None):
    """'ok', or the SQLSTATE of the error; the connection stays usable either way."""
    try:
        conn.execute(sql, params)
        return "ok"
    except psycopg.Error as e:
        return e.sqlstate


@pytest.fixture
def files(db, duck, s3url, localdir):
    """A Parquet and a CSV file in S3 and in a local directory, readable by postgres."""
    for base in (s3url, str(localdir)):
        duck.execute(f"COPY (SELECT 1 AS x, 'a' AS y) TO '{base}/f.parquet'")
        duck.execute(f"COPY (SELECT 1 AS x, 'a' AS y) TO '{base}/f.csv' (HEADER)")
    for f in localdir.iterdir():
        f.chmod(0o644)
    return {"s3": s3url, "local": str(localdir)}


def entry_points(base):
    """(name, access, SQL) for every entry point that touches the files under `base`."""
    t = f"t_{uuid.uuid4().hex[:8]}"
    return [
        ("infer", "read", f"CREATE FOREIGN TABLE {t}_i () SERVER pg_lake OPTIONS (path '{base}/f.parquet')"),
        ("declared", "read", f"CREATE FOREIGN TABLE {t}_d (x int, y text) SERVER pg_lake OPTIONS (path '{base}/f.parquet')"),
        ("copy_from", "read", f"CREATE TEMP TABLE IF NOT EXISTS {t}_h (x int, y text); COPY {t}_h FROM '{base}/f.parquet'"),
        ("copy_to", "write", f"COPY (SELECT 1 AS x) TO '{base}/out_{t}.parquet'"),
        ("list", "read", f"SELECT * FROM lake_file.list('{base}/*.parquet')"),
        ("exists", "read", f"SELECT lake_file.exists('{base}/f.parquet')"),
        ("size", "read", f"SELECT lake_file.size('{base}/f.parquet')"),
        ("preview", "read", f"SELECT * FROM lake_file.preview('{base}/f.csv')"),
    ]


# Which role may read / write which kind of location.
MAY = {
    "nobody_special": set(),
    "lake_reader": {("s3", "read")},
    "lake_writer": {("s3", "read"), ("s3", "write")},
    "file_reader": {("local", "read")},
    "file_writer": {("local", "write")},
}


@pytest.mark.parametrize("role", ROLES)
def test_privilege_matrix(connect, roles, files, role):
    conn = connect(user=role)
    for where in ("s3", "local"):
        for name, access, sql in entry_points(files[where]):
            got = outcome(conn, sql)
            if (where, access) in MAY[role]:
                assert got == "ok", (role, where, name)
            else:
                assert got == "42501", (role, where, name, got)


def test_inference_reveals_nothing_before_the_privilege_check(connect, roles, files, s3url):
    """Existing and missing files, and root-only local ones, give the same refusal."""
    conn = connect(user="nobody_special")
    errors = []
    for path in (f"{s3url}/f.parquet", f"{s3url}/missing.parquet", "/etc/shadow", "/nonexistent.csv"):
        with pytest.raises(psycopg.Error) as e:
            conn.execute(f"CREATE FOREIGN TABLE leak () SERVER pg_lake OPTIONS (path '{path}', format 'csv')")
        errors.append((e.value.sqlstate, str(e.value).replace(path, "<path>")))
    assert {s for s, _ in errors} == {"42501"}
    assert len({m for _, m in errors}) == 1, errors


def test_lake_read_cannot_preview_local_files(connect, roles, files):
    conn = connect(user="lake_reader")
    for url in (f"{files['local']}/f.csv", f"file://{files['local']}/f.csv", "file:///etc/passwd.csv"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM lake_file.preview(%s)", (url,))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a file postgres cannot read")
def test_server_file_roles_stay_within_the_postgres_os_user(connect, roles, localdir):
    """pg_read_server_files / pg_write_server_files reach what the postgres OS user can
    reach, never more (the engine may run as another user)."""
    secret_dir = localdir / "root_only"
    secret_dir.mkdir(mode=0o700)
    secret = secret_dir.parent / "secret.csv"
    secret.write_text("x\nTOP-SECRET\n")
    secret.chmod(0o600)
    reader = connect(user="file_reader")
    reader.execute("CREATE TEMP TABLE h (x text)")
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
        reader.execute(f"COPY h FROM '{secret}' WITH (compression 'none', format 'csv')")
    assert "TOP-SECRET" not in str(e.value)
    assert "could not open file" in str(e.value)
    writer = connect(user="file_writer")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        writer.execute(f"COPY (SELECT 1 AS x) TO '{secret_dir}/out.parquet'")
    assert list(secret_dir.iterdir()) == []


@pytest.mark.parametrize("url", [
    "s3://lake/k.csv?s3_endpoint=169.254.169.254&s3_url_style=vhost",
    "gs://lake/k.parquet?s3_region=x",
])
def test_query_parameters_are_refused_everywhere(db, url):
    statements = [
        f"CREATE FOREIGN TABLE ssrf (a text) SERVER pg_lake OPTIONS (path '{url}', format 'csv')",
        f"CREATE FOREIGN TABLE ssrf () SERVER pg_lake OPTIONS (path '{url}', format 'csv')",
        f"COPY (SELECT 1 AS a) TO '{url}' WITH (format 'csv')",
        f"CREATE TEMP TABLE IF NOT EXISTS h (a text); COPY h FROM '{url}' WITH (format 'csv')",
        f"SELECT lake_file.exists('{url}')",
        f"SELECT lake_file.size('{url}')",
        f"SELECT * FROM lake_file.list('{url}')",
        f"SELECT * FROM lake_file.preview('{url}')",
    ]
    for sql in statements:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
            db.execute(sql)
        assert "query parameters are not permitted in cloud storage URLs" in str(e.value), sql


def deep_json(depth):
    return "{\"a\":" * depth + "1" + "}" * depth + "\n"


@pytest.mark.parametrize("depth", [1000, 5000])
def test_deeply_nested_file_fails_cleanly(db, connect, localdir, depth):
    path = localdir / f"deep{depth}.json"
    path.write_text(deep_json(depth))
    path.chmod(0o644)
    started = db.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    bystander = connect()
    with pytest.raises(psycopg.Error) as e:
        db.execute(f"CREATE FOREIGN TABLE deep () SERVER pg_lake OPTIONS (path '{path}')")
    # A clean error of the statement, not a lost connection or an internal error.
    assert e.value.sqlstate and e.value.sqlstate[:2] not in ("08", "57", "XX"), (e.value.sqlstate, str(e.value))
    # The backend, the postmaster and pgduck_server are all still there.
    assert db.execute("SELECT 1").fetchone() == (1,)
    assert bystander.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == started
    assert db.execute("SELECT count(*) FROM lake_file.list(%s)", (str(path),)).fetchone() == (1,)


@pytest.mark.parametrize("shape", ["objects", "arrays"])
def test_json_too_deep_for_type_detection_is_refused_before_duckdb_reads_it(db, connect, localdir, shape):
    """6 MB of objects (1,000,000 levels) or 8 MB of arrays (4,000,000) overflowed even
    256 MiB stacks inside DuckDB's type detection; every path that detects checks a
    file's depth first (54001), and nothing goes down."""
    path = localdir / f"deep_{shape}.json"
    if shape == "objects":
        path.write_text(deep_json(1_000_000))
    else:
        path.write_text('{"a":' + "[" * 4_000_000 + "1" + "]" * 4_000_000 + "}\n")
    path.chmod(0o644)
    started = db.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    bystander = connect()
    db.execute("CREATE TABLE heap (a jsonb)")
    db.execute(f"CREATE FOREIGN TABLE declared (a jsonb) SERVER pg_lake OPTIONS (path '{path}')")
    statements = [
        f"CREATE FOREIGN TABLE deep () SERVER pg_lake OPTIONS (path '{path}')",
        "SELECT count(*) FROM declared",
        f"SELECT * FROM lake_file.preview('{path}')",
        f"COPY heap FROM '{path}'",
    ]
    for sql in statements:
        with pytest.raises(psycopg.errors.ProgramLimitExceeded) as e:
            db.execute(sql)
        assert f'JSON in "{path}" is nested' in str(e.value) and "at most 10000" in str(e.value), sql
    assert db.execute("SELECT 1").fetchone() == (1,)
    assert bystander.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == started
    # A shallow file beside it still reads, through the same engine.
    ok = localdir / "shallow.json"
    ok.write_text('{"a": {"b": [1, 2]}}\n')
    ok.chmod(0o644)
    db.execute(f"CREATE FOREIGN TABLE fine () SERVER pg_lake OPTIONS (path '{ok}')")
    assert db.execute("SELECT (a).b FROM fine").fetchone() == ([1, 2],)


def test_copy_to_works_under_a_pod_memory_limit(db, duck, s3url, localdir):
    """The operator gives pgduck_server a memory limit; COPY TO must work within one."""
    before = duck.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    duck.execute("SET GLOBAL memory_limit = '1GB'")
    try:
        for url in (f"{s3url}/m.parquet", f"{s3url}/m.csv", f"{localdir}/m.json"):
            db.execute(f"COPY (SELECT g AS a, 'x' || g AS b FROM generate_series(1, 1000) g) TO '{url}'")
            assert duck.execute(f"SELECT count(*) FROM '{url}'").fetchone() == (1000,)
    finally:
        duck.execute(f"SET GLOBAL memory_limit = '{before}'")


def test_line_breaks_inside_values_round_trip(db, duck, s3url):
    """The CSV stream into pgduck_server fixes its line terminator: CR and LF inside values
    are data (DuckDB used to sniff CR LF and fail on 'abc\\r\\ndef')."""
    values = ["abc\r\ndef", "x\ry", "p\nq", "\r\n", ""]
    db.execute("CREATE TABLE src (i int, t text)")
    with db.cursor() as c:
        c.executemany("INSERT INTO src VALUES (%s, %s)", list(enumerate(values)))
    for ext in ("parquet", "json"):
        db.execute(f"COPY src TO '{s3url}/nl.{ext}'")
        db.execute("CREATE TABLE back (i int, t text)")
        db.execute(f"COPY back FROM '{s3url}/nl.{ext}'")
        assert db.execute("SELECT t FROM back ORDER BY i").fetchall() == [(v,) for v in values], ext
        db.execute("DROP TABLE back")
    db.execute(f"COPY src TO '{s3url}/nl.csv'")
    rows = duck.execute(f"SELECT t FROM read_csv('{s3url}/nl.csv', header = false, new_line = '\\n', "
                        "columns = {'i': 'INTEGER', 't': 'VARCHAR'}) ORDER BY i").fetchall()
    assert [r[0] or "" for r in rows] == values


def test_nul_byte_in_a_csv_field_is_an_error(db, localdir):
    path = localdir / "nul.csv"
    path.write_bytes(b"1,x\x00y\n2,ok\n")
    path.chmod(0o644)
    db.execute(f"CREATE FOREIGN TABLE nul (i int, t text) SERVER pg_lake OPTIONS (path '{path}', header 'false')")
    with pytest.raises(psycopg.errors.CharacterNotInRepertoire) as e:
        db.execute("SELECT * FROM nul").fetchall()
    assert '"t"' in (e.value.diag.message_detail or "")


def test_rounded_numeric_digits_are_reported(db, duck, s3url):
    notices = []
    db.add_notice_handler(lambda d: notices.append((d.severity_nonlocalized, d.message_primary)))
    db.execute(f"COPY (SELECT 1.0123456789012::numeric AS precise, 2.5::numeric AS plain) TO '{s3url}/n.parquet'")
    warnings = [m for s, m in notices if s == "WARNING"]
    assert len(warnings) == 1 and '"precise"' in warnings[0], notices
    notices.clear()
    db.execute(f"COPY (SELECT 1.25::numeric AS fits) TO '{s3url}/n2.parquet'")
    assert [m for s, m in notices if s == "WARNING"] == []


def test_failed_copy_to_leaves_no_file(db, duck, localdir):
    target = localdir / "out.parquet"
    # A timestamp beyond DuckDB's range (year 294247): the write fails inside DuckDB,
    # after it has opened its output file.
    with pytest.raises(psycopg.Error):
        db.execute(f"COPY (SELECT '294270-01-01'::timestamp AS n) TO '{target}'")
    assert list(localdir.iterdir()) == []
    db.execute(f"COPY (SELECT 1 AS n) TO '{target}'")
    assert [p.name for p in localdir.iterdir()] == ["out.parquet"]
    assert duck.execute(f"SELECT n FROM '{target}'").fetchone() == (1,)


def test_engine_host_is_hidden_and_never_quoted_with_its_password(connect, db, roles):
    user = connect(user="lake_reader")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        user.execute("SHOW pg_lake_engine.host")
    assert user.execute(
        "SELECT count(*) FROM pg_settings WHERE name = 'pg_lake_engine.host'").fetchone() == (0,)
    db.execute("SET pg_lake_engine.host = 'host=127.0.0.1 port=1 password=Sekr1t-Value connect_timeout=2'")
    with pytest.raises(psycopg.Error) as e:
        db.execute("SELECT lake_file.exists('s3://lake/x.parquet')")
    text = str(e.value) + (e.value.diag.message_detail or "") + (e.value.diag.message_hint or "")
    assert "could not connect to pgduck_server" in text
    assert "Sekr1t-Value" not in text


class RestartablePgduck:
    """A pgduck_server on a fixed socket that a test can kill and start again."""

    def __init__(self, workdir, env):
        # As in a pod and the shared fixtures: the postgres OS user, a private socket dir.
        self.dir = workdir / f"restart-{uuid.uuid4().hex[:6]}"
        self.dir.mkdir(mode=0o700)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self.env = env
        self.log = open(workdir / f"{self.dir.name}.log", "ab")
        self.proc = None

    def start(self):
        cmd = [str(PGDUCK_BIN), "--unix_socket_directory", str(self.dir), "--port", str(self.port),
               "--extensions_dir", DUCKDB_EXTENSIONS, "--cache_dir", str(self.dir / "cache"),
               "--memory_limit", "1GB"]
        self.proc = subprocess.Popen(as_postgres(cmd), stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env})
        wait_for(lambda: unix_open(self.dir / f".s.PGSQL.{self.port}"), "pgduck_server")

    def kill(self):
        # runuser forwards signals it can catch; kill the server itself, as an OOM kill would.
        pid = int(subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                                 text=True).stdout.split()[0]) if os.geteuid() == 0 else self.proc.pid
        os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def test_statements_succeed_after_pgduck_server_restarts(db, workdir, moto, s3url, duck):
    duck.execute(f"COPY (SELECT range AS x FROM range(10)) TO '{s3url}/a.parquet'")
    duck.execute(f"COPY (SELECT range AS x FROM range(5)) TO '{s3url}/b.parquet'")
    server = RestartablePgduck(workdir, {
        "AWS_ACCESS_KEY_ID": moto["key"], "AWS_SECRET_ACCESS_KEY": moto["secret"],
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto["endpoint"], "PG_LAKE_S3_URL_STYLE": "path",
    })
    server.start()
    try:
        db.execute(f"SET pg_lake_engine.host = 'host={server.dir} port={server.port}'")
        db.execute(f"CREATE FOREIGN TABLE a () SERVER pg_lake OPTIONS (path '{s3url}/a.parquet')")
        db.execute(f"CREATE FOREIGN TABLE b () SERVER pg_lake OPTIONS (path '{s3url}/b.parquet')")
        join = "SELECT count(*) FROM a, b, a AS a2, b AS b2 WHERE a.x = b.x AND a2.x = b2.x AND a.x = a2.x"
        # A nested-loop join holds several pooled connections at once.
        db.execute("SET enable_hashjoin = off; SET enable_mergejoin = off")
        assert db.execute(join).fetchone() == (5,)
        for _ in range(2):
            server.kill()
            server.start()
            assert db.execute("SELECT count(*) FROM a").fetchone() == (10,)
            assert db.execute(join).fetchone() == (5,)
    finally:
        server.stop()
