"""Real clients against the REST catalog: PyIceberg writes, DuckDB's iceberg
extension reads, concurrent writers all land."""

import threading
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.types import StringType
from rest_catalog_support import SCHEMA, SPEC, batch, duckdb_rows, rows

def test_pyiceberg_roundtrip_and_duckdb_reads_the_same_rows(rest_catalog, catalog_server, namespace):
    table = rest_catalog.create_table(f"{namespace}.events", schema=SCHEMA, partition_spec=SPEC)
    first, second = batch(0, 100), batch(100, 50)
    table.append(first)
    table.append(second)

    reloaded = rest_catalog.load_table(f"{namespace}.events")
    assert len(reloaded.history()) == 2
    expected = rows(pa.concat_tables([first, second]))
    assert rows(reloaded.scan().to_arrow()) == expected
    assert rows(reloaded.scan(row_filter="category == 'b'").to_arrow()) == [r for r in expected if r[1] == "b"]

    assert duckdb_rows(catalog_server.url, namespace, "events") == expected

    with reloaded.update_schema() as update:
        update.add_column("note", StringType())
    reloaded = rest_catalog.load_table(f"{namespace}.events")
    assert [f.name for f in reloaded.schema().fields] == ["id", "category", "value", "note"]
    assert reloaded.scan().to_arrow().column("note").null_count == 150

    location = Path(reloaded.location())
    assert any(location.rglob("*.parquet"))
    rest_catalog.purge_table(f"{namespace}.events")
    with pytest.raises(NoSuchTableError):
        rest_catalog.load_table(f"{namespace}.events")
    assert not any(location.rglob("*.parquet")), "purge removes the data files"


def test_concurrent_appenders_all_land(catalog_server, namespace):
    from pyiceberg.catalog.rest import RestCatalog

    setup = RestCatalog("lake", uri=catalog_server.url)
    setup.create_table(
        f"{namespace}.shared",
        schema=SCHEMA,
        properties={"commit.retry.num-retries": "50", "commit.retry.min-wait-ms": "10", "commit.retry.max-wait-ms": "200"},
    )
    writers, appends_each, rows_each = 4, 5, 10
    errors = []

    def writer(w: int):
        try:
            catalog = RestCatalog("lake", uri=catalog_server.url)
            for i in range(appends_each):
                table = catalog.load_table(f"{namespace}.shared")
                table.append(batch((w * appends_each + i) * rows_each, rows_each))
        except Exception as e:  # reported below with the writer's number
            errors.append((w, repr(e)))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    table = setup.load_table(f"{namespace}.shared")
    expected = rows(batch(0, writers * appends_each * rows_each))
    assert rows(table.scan().to_arrow()) == expected, "no append is lost or doubled"
    assert len(table.history()) == writers * appends_each


def test_stale_writer_gets_a_conflict_not_a_lost_update(rest_catalog, namespace):
    rest_catalog.create_table(f"{namespace}.t", schema=SCHEMA)
    a = rest_catalog.load_table(f"{namespace}.t")
    b = rest_catalog.load_table(f"{namespace}.t")
    with a.update_schema() as update:
        update.add_column("x", StringType())
    with pytest.raises(CommitFailedException):
        with b.update_schema() as update:
            update.add_column("y", StringType())
    names = [f.name for f in rest_catalog.load_table(f"{namespace}.t").schema().fields]
    assert names == ["id", "category", "value", "x"]


def test_catalog_rows_are_readable_by_pyiceberg_sql_catalog(rest_catalog, catalog_server, namespace, postgres_url):
    """The JDBC/SQL-catalog layout: PyIceberg's SqlCatalog reads what REST wrote."""
    from pyiceberg.catalog.sql import SqlCatalog

    rest_catalog.create_table(f"{namespace}.t", schema=SCHEMA).append(batch(0, 5))
    sql = SqlCatalog(
        "pg_lake",
        uri=postgres_url.replace("postgres://", "postgresql+psycopg://") + "?options=-csearch_path%3Dlake_catalog",
        warehouse=str(catalog_server.warehouse),
    )
    assert rows(sql.load_table(f"{namespace}.t").scan().to_arrow()) == rows(batch(0, 5))


def test_create_table_transaction_stages_then_commits(rest_catalog, namespace):
    """PyIceberg's staged create: nothing exists until the transaction commits."""
    txn = rest_catalog.create_table_transaction(f"{namespace}.staged", schema=SCHEMA, partition_spec=SPEC)
    txn.append(batch(0, 12))
    assert not rest_catalog.table_exists(f"{namespace}.staged")
    txn.commit_transaction()
    table = rest_catalog.load_table(f"{namespace}.staged")
    assert rows(table.scan().to_arrow()) == rows(batch(0, 12))
    assert table.spec().fields[0].name == "category"


def test_gzip_metadata_in_its_own_folder_round_trips_through_pyiceberg(rest_catalog, catalog_server, namespace):
    folder = f"{catalog_server.warehouse}/{namespace}/meta-files"
    properties = {"write.metadata.compression-codec": "gzip", "write.metadata.path": folder}
    table = rest_catalog.create_table(f"{namespace}.zipped", schema=SCHEMA, properties=properties)
    assert table.metadata_location.startswith(f"{folder}/00000-"), table.metadata_location
    assert table.metadata_location.endswith(".gz.metadata.json")
    table.append(batch(0, 20))
    reloaded = rest_catalog.load_table(f"{namespace}.zipped")
    assert reloaded.metadata_location.startswith(f"{folder}/00001-"), reloaded.metadata_location
    assert Path(reloaded.metadata_location).read_bytes()[:2] == b"\x1f\x8b"
    assert rows(reloaded.scan().to_arrow()) == rows(batch(0, 20))
