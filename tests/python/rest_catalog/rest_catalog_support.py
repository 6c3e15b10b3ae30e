"""Shared by the REST catalog suites: a table schema, data batches, and reading
a table back through DuckDB's iceberg extension attached to the catalog."""

import os

import duckdb
import pyarrow as pa
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import DoubleType, LongType, NestedField, StringType

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "category", StringType(), required=False),
    NestedField(3, "value", DoubleType(), required=False),
)
SPEC = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="category"))


def batch(start: int, n: int) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "category": pa.array([("a", "b", "c")[i % 3] for i in ids], pa.string()),
            "value": pa.array([i * 1.5 for i in ids], pa.float64()),
        }
    )


def rows(table: pa.Table):
    return sorted(zip(*(table.column(c).to_pylist() for c in ("id", "category", "value"))))


def duckdb_rows(server_url: str, namespace: str, table: str):
    con = duckdb.connect()
    con.execute(f"SET extension_directory='{os.environ['PG_LAKE_DUCKDB_EXTENSIONS']}'")
    con.execute("LOAD httpfs")
    con.execute("LOAD iceberg")
    con.execute(f"ATTACH 'lake' AS lake (TYPE iceberg, ENDPOINT '{server_url}', AUTHORIZATION_TYPE 'none')")
    try:
        return sorted(con.execute(f'SELECT id, category, value FROM lake."{namespace}"."{table}"').fetchall())
    finally:
        con.close()
