"""An S3 warehouse (moto, path-style, plain HTTP): metadata goes through
object_store; PyIceberg and DuckDB get the FileIO settings and vended keys
from the catalog."""

import pyarrow as pa
import requests
from pyiceberg.catalog.rest import RestCatalog

from rest_catalog_support import SCHEMA, batch, duckdb_rows, rows


def test_s3_warehouse_round_trip(s3_catalog_server, moto):
    catalog = RestCatalog("s3lake", uri=s3_catalog_server.url)
    config = catalog.properties
    assert config["s3.endpoint"] == moto["endpoint"]
    assert config["s3.path-style-access"] == "true"
    # The keys are never handed to everyone in /v1/config ...
    raw_config = requests.get(f"{s3_catalog_server.url}/v1/config").text
    assert moto["secret"] not in raw_config

    catalog.create_namespace("s3ns")
    table = catalog.create_table("s3ns.t", schema=SCHEMA)
    assert table.metadata_location.startswith("s3://lake/warehouse/s3ns/t/metadata/")
    table.append(batch(0, 20))
    table.append(batch(20, 5))
    reloaded = catalog.load_table("s3ns.t")
    expected = rows(pa.concat_tables([batch(0, 20), batch(20, 5)]))
    assert rows(reloaded.scan().to_arrow()) == expected
    # DuckDB reaches the files with the endpoint and keys the catalog hands out.
    assert duckdb_rows(s3_catalog_server.url, "s3ns", "t") == expected

    # ... only to loads that ask for them (PyIceberg always does).
    load_url = f"{s3_catalog_server.url}/v1/namespaces/s3ns/tables/t"
    plain = requests.get(load_url)
    assert plain.status_code == 200
    assert moto["secret"] not in plain.text
    asked = requests.get(load_url, headers={"X-Iceberg-Access-Delegation": "vended-credentials"}).json()
    assert asked["config"]["s3.secret-access-key"] == moto["secret"]
    [credential] = asked["storage-credentials"]
    assert credential["prefix"] == "s3://lake/warehouse/s3ns/t"
    assert credential["config"]["s3.access-key-id"] == moto["key"]

    s3 = moto["s3"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="warehouse/s3ns/t/")["Contents"]]
    assert sum(k.endswith(".metadata.json") for k in keys) == 3
    catalog.purge_table("s3ns.t")
    assert s3.list_objects_v2(Bucket="lake", Prefix="warehouse/s3ns/t/").get("KeyCount", 0) == 0
