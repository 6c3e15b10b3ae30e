"""The original pg_lake's extension, FDW, server and schema names: its users' scripts and a
schema-only dump of its objects run unchanged (psql and psycopg against a real Postgres)."""

import subprocess
import uuid

import psycopg
import pytest

from lake_testing import PG_BIN

NAMES = ["pg_extension_base", "pg_map", "pg_lake_engine", "pg_lake_iceberg", "pg_lake_table", "pg_lake_copy"]


@pytest.fixture
def empty_db(postgres):
    """A fresh database without any extension."""
    name = f"c_{uuid.uuid4().hex[:10]}"
    admin = dict(host=postgres["host"], port=postgres["port"], user="postgres", autocommit=True)
    with psycopg.connect(dbname="postgres", **admin) as c:
        c.execute(f"CREATE DATABASE {name}")
    conn = psycopg.connect(dbname=name, **admin)
    yield name, conn
    conn.close()
    with psycopg.connect(dbname="postgres", **admin) as c:
        c.execute(f"DROP DATABASE {name} WITH (FORCE)")


def extensions(conn):
    return {r[0] for r in conn.execute("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'")}


@pytest.mark.parametrize("name", NAMES + ["pg_lake"])
@pytest.mark.parametrize("cascade", ["CASCADE", ""])
def test_each_name_alone_installs_pg_lake(empty_db, name, cascade):
    _, conn = empty_db
    conn.execute(f"CREATE EXTENSION {name} {cascade}")
    assert extensions(conn) == {"pg_lake", name}
    assert conn.execute("SELECT srvname, fdwname FROM pg_foreign_server s "
                        "JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw ORDER BY 1").fetchall() == \
        [("pg_lake", "pg_lake_table"), ("pg_lake_iceberg", "pg_lake_iceberg")]
    schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'lake\\_%'")}
    assert schemas == {"lake_file", "lake_iceberg", "lake_engine", "lake_table"}


def test_any_order_and_drop(empty_db):
    _, conn = empty_db
    for name in reversed(NAMES):
        conn.execute(f"CREATE EXTENSION IF NOT EXISTS {name}")
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_lake CASCADE")
    assert extensions(conn) == set(NAMES) | {"pg_lake"}
    # A compatibility name owns nothing: dropping it leaves pg_lake working.
    conn.execute("DROP EXTENSION pg_lake_table")
    assert conn.execute("SELECT count(*) FROM pg_foreign_server WHERE srvname = 'pg_lake'").fetchone() == (1,)
    # pg_lake itself goes only with what requires it.
    with pytest.raises(psycopg.errors.DependentObjectsStillExist):
        conn.execute("DROP EXTENSION pg_lake")
    conn.execute("DROP EXTENSION pg_lake CASCADE")
    assert extensions(conn) == set()


def test_a_foreign_table_on_the_iceberg_server_is_an_iceberg_table(empty_db):
    """The original's underlying form: CREATE FOREIGN TABLE ... SERVER pg_lake_iceberg."""
    name, conn = empty_db
    conn.execute("CREATE EXTENSION pg_lake CASCADE")
    conn.execute("CREATE FOREIGN TABLE ice (a int) SERVER pg_lake_iceberg OPTIONS (location 's3://lake/compat-ice')")
    conn.execute("INSERT INTO ice VALUES (1), (2)")
    assert conn.execute("SELECT sum(a) FROM ice").fetchone() == (3,)
    assert conn.execute("SELECT catalog_name, table_name FROM lake_catalog.iceberg_tables").fetchall() == \
        [(name, "ice")]
    with pytest.raises(psycopg.errors.FdwInvalidOptionName):
        conn.execute("CREATE FOREIGN TABLE bad (a int) SERVER pg_lake_iceberg OPTIONS (path 's3://lake/x')")


def test_custom_server_on_the_original_fdw_reads_files(empty_db, duck, s3url):
    _, conn = empty_db
    conn.execute("CREATE EXTENSION pg_lake_table CASCADE")
    duck.execute(f"COPY (SELECT 42 AS answer) TO '{s3url}/a.parquet'")
    conn.execute("CREATE SERVER my_lake FOREIGN DATA WRAPPER pg_lake_table")
    conn.execute(f"CREATE FOREIGN TABLE a () SERVER my_lake OPTIONS (path '{s3url}/a.parquet')")
    assert conn.execute("SELECT answer FROM a").fetchall() == [(42,)]


# What `pg_dump --schema-only` of a database using the original writes (extensions in
# dependency order, without CASCADE, search_path emptied), with a foreign table, a view
# and grants to its roles.
DUMP = """
SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_extension_base WITH SCHEMA public;
COMMENT ON EXTENSION pg_extension_base IS 'Extension base';
CREATE EXTENSION IF NOT EXISTS pg_map WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS pg_lake_engine WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS pg_lake_iceberg WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS pg_lake_table WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS pg_lake_copy WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS pg_lake WITH SCHEMA public;
SET default_tablespace = '';
CREATE FOREIGN TABLE public.trips (
    id bigint,
    city text
)
SERVER pg_lake
OPTIONS (
    path '{url}'
);
ALTER FOREIGN TABLE public.trips OWNER TO postgres;
CREATE VIEW public.by_city AS
 SELECT trips.city, count(*) AS n FROM public.trips GROUP BY trips.city;
GRANT SELECT ON TABLE public.trips TO lake_read;
GRANT SELECT ON TABLE public.by_city TO lake_read;
"""


def test_schema_only_dump_of_the_original_restores(empty_db, postgres, duck, s3url, workdir):
    name, conn = empty_db
    duck.execute(f"COPY (SELECT 1::BIGINT AS id, 'Oslo' AS city UNION ALL SELECT 2, 'Oslo') TO '{s3url}/t.parquet'")
    dump = workdir / f"{name}.sql"
    dump.write_text(DUMP.format(url=f"{s3url}/t.parquet"))
    dump.chmod(0o644)
    subprocess.run([PG_BIN / "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", postgres["host"],
                    "-p", str(postgres["port"]), "-U", "postgres", "-d", name, "-f", str(dump)],
                   check=True, capture_output=True, text=True)
    assert extensions(conn) == set(NAMES) | {"pg_lake"}
    assert conn.execute("SELECT city, n FROM by_city").fetchall() == [("Oslo", 2)]
