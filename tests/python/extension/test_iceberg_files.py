"""Reading an Iceberg table another engine wrote, by its metadata file (`format 'iceberg'`,
as in the original): PyIceberg writes to moto's S3, Postgres reads through pgduck_server's
DuckDB iceberg reader, foreign tables and COPY FROM alike."""

from decimal import Decimal

import pyarrow as pa
import psycopg
import pytest
from pyiceberg.catalog.sql import SqlCatalog


@pytest.fixture
def iceberg_table(moto, s3url, workdir):
    catalog = SqlCatalog("files", **{
        "uri": f"sqlite:///{workdir}/pyiceberg-{s3url.rsplit('/', 1)[1]}.db",
        "warehouse": f"{s3url}/warehouse",
        "s3.endpoint": moto["endpoint"], "s3.access-key-id": moto["key"],
        "s3.secret-access-key": moto["secret"], "s3.region": "us-east-1",
    })
    catalog.create_namespace("ns")
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("amount", pa.decimal128(12, 2))])
    table = catalog.create_table("ns.t", schema=schema)
    table.append(pa.table({"id": [1, 2], "name": ["a", "b"], "amount": [Decimal("1.25"), Decimal("2.50")]},
                          schema=schema))
    table.append(pa.table({"id": [3], "name": ["c"], "amount": [Decimal("3.75")]}, schema=schema))
    return table


def test_foreign_table_over_an_iceberg_table(db, iceberg_table):
    url = iceberg_table.metadata_location
    db.execute(f"CREATE FOREIGN TABLE ice () SERVER pg_lake OPTIONS (path '{url}')")
    assert db.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                      "WHERE attrelid = 'ice'::regclass AND attnum > 0 ORDER BY attnum").fetchall() == \
        [("id", "bigint"), ("name", "text"), ("amount", "numeric(12,2)")]
    assert db.execute("SELECT count(*), sum(amount)::text, max(name) FROM ice").fetchone() == (3, "7.50", "c")
    assert db.execute("SELECT name FROM ice WHERE id = 2").fetchall() == [("b",)]
    # The format can be given explicitly too, and COPY FROM reads the same snapshot.
    db.execute(f"CREATE FOREIGN TABLE ice2 (id bigint, name text, amount numeric(12,2)) SERVER pg_lake "
               f"OPTIONS (path '{url}', format 'iceberg')")
    assert db.execute("SELECT count(*) FROM ice2").fetchone() == (3,)
    db.execute("CREATE TABLE heap (id bigint, name text, amount numeric(12,2))")
    assert db.execute(f"COPY heap FROM '{url}'").rowcount == 3


def test_iceberg_format_is_read_only_and_takes_no_file_options(db, iceberg_table, s3url):
    url = iceberg_table.metadata_location
    with pytest.raises(psycopg.errors.FeatureNotSupported) as e:
        db.execute(f"COPY (SELECT 1 AS a) TO '{s3url}/x.metadata.json'")
    assert "iceberg" in str(e.value)
    with pytest.raises(psycopg.Error) as e:
        db.execute(f"CREATE FOREIGN TABLE bad () SERVER pg_lake OPTIONS (path '{url}', compression 'gzip')")
    assert '"compression"' in str(e.value)


def test_metadata_in_a_bucket_cannot_lead_to_local_files(db, connect, iceberg_table, localdir):
    """A lake_read role reads what object storage holds; a metadata file that names a local
    data file is refused for it, as the local file itself would be."""
    import pyarrow.parquet as pq
    local = localdir / "local.parquet"
    pq.write_table(pa.table({"id": pa.array([9], pa.int64()), "name": ["local"],
                             "amount": pa.array([Decimal("9.99")], pa.decimal128(12, 2))}), local)
    local.chmod(0o644)
    iceberg_table.add_files([str(local)])
    url = iceberg_table.metadata_location
    db.execute("CREATE ROLE ice_reader LOGIN IN ROLE lake_read")
    db.execute("GRANT CREATE ON SCHEMA public TO ice_reader")
    try:
        reader = connect(user="ice_reader")
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
            reader.execute(f"CREATE FOREIGN TABLE mixed () SERVER pg_lake OPTIONS (path '{url}')")
        assert "pg_read_server_files" in str(e.value)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("SELECT * FROM lake_file.preview(%s)", (url,))
        # A superuser may read both.
        db.execute(f"CREATE FOREIGN TABLE mixed () SERVER pg_lake OPTIONS (path '{url}')")
        assert db.execute("SELECT count(*) FROM mixed").fetchone() == (4,)
    finally:
        db.execute("DROP OWNED BY ice_reader")
        db.execute("DROP ROLE ice_reader")
