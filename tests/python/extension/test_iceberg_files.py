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


def test_files_of_crafted_metadata_check_each_file_it_names(db, connect, iceberg_table, localdir, s3url):
    """`lake_iceberg.files` reads the manifest list and the manifests a metadata file names:
    a metadata file in a bucket that names a local manifest list is refused for a lake_read
    role, as reading that local file directly would be."""
    import json
    io = iceberg_table.io
    metadata = json.loads(io.new_input(iceberg_table.metadata_location).open().read())
    current = next(s for s in metadata["snapshots"] if s["snapshot-id"] == metadata["current-snapshot-id"])
    local = localdir / "crafted-manifest-list.avro"
    local.write_bytes(io.new_input(current["manifest-list"]).open().read())
    local.chmod(0o644)
    current["manifest-list"] = str(local)
    crafted = f"{s3url}/crafted/v1.metadata.json"
    with io.new_output(crafted).create(overwrite=True) as out:
        out.write(json.dumps(metadata).encode())
    db.execute("CREATE ROLE files_reader LOGIN IN ROLE lake_read")
    try:
        reader = connect(user="files_reader")
        # The untouched table's files are listed for the role.
        assert len(reader.execute("SELECT * FROM lake_iceberg.files(%s)",
                                  (iceberg_table.metadata_location,)).fetchall()) == 2
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
            reader.execute("SELECT * FROM lake_iceberg.files(%s)", (crafted,))
        assert "pg_read_server_files" in str(e.value)
        # A superuser may read it: the same two files.
        assert len(db.execute("SELECT * FROM lake_iceberg.files(%s)", (crafted,)).fetchall()) == 2
    finally:
        db.execute("DROP OWNED BY files_reader")
        db.execute("DROP ROLE files_reader")
