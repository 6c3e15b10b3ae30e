"""Fixtures for the pg_lake extension tests: a real Postgres (initdb'd as the postgres
user, pg_lake preloaded) wired to the shared pgduck_server and moto fixtures
(tests/python/conftest.py), on 127.0.0.1 / unix sockets in a temporary directory."""

import uuid

import psycopg
import pytest

from lake_testing import PostgresCluster

BUCKET = "lake"


@pytest.fixture(scope="session")
def postgres(workdir, pgduck):
    pg = PostgresCluster(base=workdir / "postgres", settings={
        "shared_preload_libraries": "pg_lake",
        "pg_lake_engine.host": f"host={pgduck['dir']} port={pgduck['port']}",
        "pg_lake_iceberg.default_location_prefix": f"s3://{BUCKET}/warehouse",
        # Tests count files and snapshots: background VACUUM runs only in the test of it.
        "pg_lake_iceberg.autovacuum": "off",
    })
    yield {"host": pg.host, "port": pg.port, "sock": str(pg.sock)}
    pg.stop(mode="immediate", remove=False)


@pytest.fixture
def dbname(postgres):
    """A fresh database with pg_lake created, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(host=postgres["host"], port=postgres["port"], user="postgres",
                         dbname="postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(host=postgres["host"], port=postgres["port"], user="postgres",
                         dbname=name, autocommit=True) as c:
        c.execute("CREATE EXTENSION pg_lake CASCADE")
    yield name
    with psycopg.connect(host=postgres["host"], port=postgres["port"], user="postgres",
                         dbname="postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def connect(postgres, dbname):
    """Opens psycopg connections to the test database (superuser unless `user` given)."""
    opened = []

    def _connect(user="postgres", **kw):
        c = psycopg.connect(host=postgres["host"], port=postgres["port"], user=user,
                            dbname=dbname, autocommit=True, **kw)
        opened.append(c)
        return c

    yield _connect
    for c in opened:
        c.close()


@pytest.fixture
def db(connect):
    return connect()


@pytest.fixture
def duck(pgduck):
    """A direct connection to pgduck_server, to prepare files with DuckDB."""
    with psycopg.connect(pgduck["conninfo"], autocommit=True) as c:
        yield c


@pytest.fixture
def s3url():
    """A fresh S3 prefix for one test."""
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def localdir(workdir):
    d = workdir / "files" / uuid.uuid4().hex[:12]
    d.mkdir(parents=True)
    d.chmod(0o777)
    return d
