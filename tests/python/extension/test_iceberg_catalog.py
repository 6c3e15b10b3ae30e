"""Postgres and the REST catalog share one Iceberg catalog: the lake_catalog tables.

The extension creates them on first use (the `iceberg_tables` view), the REST catalog
at start-up; whichever comes first, the other finds them current. They are not
extension members, so DROP EXTENSION keeps every engine's table registrations."""

import shutil
import tempfile
import threading
import uuid
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

from lake_testing import CatalogServer, rest_catalog_binary


def catalog_schema_version(db):
    return db.execute("SELECT max(version) FROM lake_catalog.schema_version").fetchone()[0]


def extension_members_in_lake_catalog(db):
    return db.execute("""
        SELECT count(*) FROM pg_depend d
          JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
         WHERE e.extname = 'pg_lake' AND d.deptype = 'e'
           AND ((d.classid = 'pg_class'::regclass
                 AND d.objid IN (SELECT c.oid FROM pg_class c
                                   JOIN pg_namespace n ON n.oid = c.relnamespace
                                  WHERE n.nspname = 'lake_catalog'))
             OR (d.classid = 'pg_namespace'::regclass
                 AND d.objid = 'lake_catalog'::regnamespace))""").fetchone()[0]


@pytest.fixture
def catalog_for(postgres, workdir):
    """Starts rest_catalog on one database of the test Postgres, warehouse in a temp dir."""
    started = []

    def start(dbname):
        home = Path(tempfile.mkdtemp(prefix="lake-catalog-", dir=workdir))
        url = f"postgres://postgres@127.0.0.1:{postgres['port']}/{dbname}"
        server = CatalogServer(rest_catalog_binary(), url, home, str(home / "warehouse"))
        started.append((server, home))
        return server

    yield start
    for server, home in started:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_first_use_creates_the_shared_schema_outside_the_extension(db):
    assert db.execute("SELECT to_regnamespace('lake_catalog')").fetchone()[0] is None, \
        "CREATE EXTENSION must not create the catalog tables (they would become extension members)"
    assert db.execute("SELECT * FROM iceberg_tables").fetchall() == []
    version = catalog_schema_version(db)
    assert version >= 1
    assert db.execute("SELECT count(*) FROM lake_catalog.schema_version").fetchone()[0] == version
    assert extension_members_in_lake_catalog(db) == 0
    # A second use changes nothing.
    assert db.execute("SELECT count(*) FROM iceberg_tables").fetchone()[0] == 0
    assert catalog_schema_version(db) == version

    db.execute("""INSERT INTO lake_catalog.iceberg_tables
                  (catalog_name, table_namespace, table_name, metadata_location)
                  VALUES ('lake', 'kept', 't', 'file:///nowhere/v1.metadata.json')""")
    db.execute("DROP EXTENSION pg_lake CASCADE")
    assert db.execute("SELECT table_name FROM lake_catalog.iceberg_tables").fetchall() == [("t",)], \
        "DROP EXTENSION keeps the catalog rows"
    db.execute("CREATE EXTENSION pg_lake")
    assert db.execute("SELECT table_namespace, table_name FROM iceberg_tables").fetchall() == [("kept", "t")]


def test_a_rolled_back_first_use_leaves_nothing(db):
    db.execute("BEGIN")
    db.execute("SELECT * FROM iceberg_tables")
    db.execute("ROLLBACK")
    assert db.execute("SELECT to_regnamespace('lake_catalog')").fetchone()[0] is None


def test_concurrent_first_uses_queue_on_the_migration_lock(connect):
    first, second = connect(), connect()
    first.execute("BEGIN")
    first.execute("SELECT * FROM iceberg_tables")
    done = threading.Event()
    errors = []

    def use():
        try:
            second.execute("SELECT * FROM iceberg_tables").fetchall()
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            done.set()

    threading.Thread(target=use).start()
    assert not done.wait(1.0), "the second first-use waits for the first one's migration lock"
    first.execute("COMMIT")
    assert done.wait(30)
    assert errors == []
    assert catalog_schema_version(first) == first.execute(
        "SELECT count(*) FROM lake_catalog.schema_version").fetchone()[0]


def test_a_read_only_first_use_is_a_clear_error(db):
    db.execute("BEGIN READ ONLY")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match='"lake_catalog"'):
        db.execute("SELECT * FROM iceberg_tables")
    db.execute("ROLLBACK")


def test_iceberg_tables_needs_lake_read(db, connect):
    db.execute("CREATE ROLE outsider LOGIN")
    db.execute("CREATE ROLE reader LOGIN IN ROLE lake_read")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connect(user="outsider").execute("SELECT * FROM iceberg_tables")
        assert connect(user="reader").execute("SELECT count(*) FROM iceberg_tables").fetchone() == (0,)
    finally:
        for c in ("outsider", "reader"):
            db.execute(f"DROP OWNED BY {c}")
            db.execute(f"DROP ROLE {c}")


def test_postgres_sees_the_tables_rest_clients_commit(db, dbname, catalog_for):
    db.execute("SELECT * FROM iceberg_tables")  # Postgres first: the catalog finds the schema current
    version = catalog_schema_version(db)
    server = catalog_for(dbname)
    assert catalog_schema_version(db) == version

    catalog = RestCatalog("lake", uri=server.url)
    catalog.create_namespace("sales")
    schema = Schema(NestedField(1, "id", LongType(), required=False),
                    NestedField(2, "name", StringType(), required=False))
    table = catalog.create_table("sales.orders", schema=schema)
    rows = db.execute("SELECT catalog_name, table_namespace, table_name, metadata_location, "
                      "previous_metadata_location FROM iceberg_tables").fetchall()
    assert rows == [("pg_lake", "sales", "orders", table.metadata_location, None)]  # the catalog's default name

    created_at = table.metadata_location
    table.append(pa.table({"id": pa.array([1, 2], pa.int64()), "name": ["a", "b"]}))
    assert table.metadata_location != created_at
    assert db.execute("SELECT metadata_location, previous_metadata_location FROM iceberg_tables "
                      "WHERE table_name = 'orders'").fetchone() == (table.metadata_location, created_at)

    catalog.drop_table("sales.orders")
    assert db.execute("SELECT count(*) FROM iceberg_tables").fetchone() == (0,)


def test_the_rest_catalog_first_then_the_extension(postgres, catalog_for):
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(host=postgres["host"], port=postgres["port"], user="postgres",
                            dbname="postgres", autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    try:
        server = catalog_for(name)
        RestCatalog("lake", uri=server.url).create_namespace("ops")
        RestCatalog("lake", uri=server.url).create_table(
            "ops.events", schema=Schema(NestedField(1, "id", LongType(), required=False)))
        with psycopg.connect(host=postgres["host"], port=postgres["port"], user="postgres",
                             dbname=name, autocommit=True) as db:
            version = catalog_schema_version(db)
            db.execute("CREATE EXTENSION pg_lake")
            assert db.execute("SELECT table_namespace, table_name FROM iceberg_tables").fetchall() == \
                [("ops", "events")]
            assert catalog_schema_version(db) == version
            assert extension_members_in_lake_catalog(db) == 0
        server.stop()  # before its database goes
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()
