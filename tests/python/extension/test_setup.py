"""The extension installs cleanly, with its settings, server and roles."""

import subprocess

import psycopg
import pytest


def test_create_extension_cascade_in_fresh_database(db):
    rows = db.execute(
        "SELECT extname FROM pg_extension WHERE extname = 'pg_lake'").fetchall()
    assert rows == [("pg_lake",)]
    assert db.execute("SELECT srvname FROM pg_foreign_server ORDER BY 1").fetchall() == \
        [("pg_lake",), ("pg_lake_iceberg",)]
    roles = db.execute(
        "SELECT rolname FROM pg_roles WHERE rolname LIKE 'lake_%' ORDER BY 1").fetchall()
    assert roles == [("lake_read",), ("lake_read_write",), ("lake_write",)]
    # lake_read_write holds both
    assert db.execute("SELECT pg_has_role('lake_read_write', 'lake_read', 'MEMBER'), "
                      "pg_has_role('lake_read_write', 'lake_write', 'MEMBER')").fetchone() == (True, True)


def test_second_database_reuses_cluster_roles(db, postgres):
    with psycopg.connect(host=postgres["host"], port=postgres["port"], user="postgres",
                         dbname="postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS second_db")
        c.execute("CREATE DATABASE second_db")
    with psycopg.connect(host=postgres["host"], port=postgres["port"], user="postgres",
                         dbname="second_db", autocommit=True) as c:
        c.execute("CREATE EXTENSION pg_lake CASCADE")
        c.execute("DROP EXTENSION pg_lake")
        c.execute("CREATE EXTENSION pg_lake")


def test_gucs(db, pgduck):
    assert db.execute("SHOW pg_lake_engine.host").fetchone()[0] == \
        f"host={pgduck['dir']} port={pgduck['port']}"
    assert db.execute("SHOW pg_lake_iceberg.default_location_prefix").fetchone()[0] == \
        "s3://lake/warehouse"
    default = db.execute(
        "SELECT boot_val FROM pg_settings WHERE name = 'pg_lake_engine.host'").fetchone()[0]
    assert default == "host=/tmp port=5332"


def test_engine_host_is_superuser_only(connect, db):
    db.execute("CREATE ROLE plain LOGIN")
    try:
        c = connect(user="plain")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SET pg_lake_engine.host = 'host=/elsewhere port=1'")
    finally:
        db.execute("DROP OWNED BY plain")
        db.execute("DROP ROLE plain")


def test_unreachable_engine_is_a_clear_error(db, workdir):
    db.execute(f"SET pg_lake_engine.host = 'host={workdir} port=1'")
    with pytest.raises(psycopg.errors.SqlclientUnableToEstablishSqlconnection) as e:
        db.execute("SELECT lake_file.exists('s3://lake/nothing')")
    assert "could not connect to pgduck_server" in str(e.value)
    db.execute("RESET pg_lake_engine.host")
    assert db.execute("SELECT lake_file.exists('s3://lake/nothing')").fetchone() == (False,)


def test_psql_scenario(postgres, dbname, duck, s3url):
    """The same flow a user types in psql: create a table over a file and query it."""
    duck.execute(f"COPY (SELECT 42 AS answer) TO '{s3url}/psql.parquet'")
    script = f"""
CREATE FOREIGN TABLE answers () SERVER pg_lake OPTIONS (path '{s3url}/psql.parquet');
SELECT answer FROM answers;
"""
    out = subprocess.run(
        ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", postgres["host"],
         "-p", str(postgres["port"]), "-U", "postgres", "-d", dbname],
        input=script, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["CREATE", "FOREIGN", "TABLE", "42"]
