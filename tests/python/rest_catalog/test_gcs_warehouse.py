"""A gs:// warehouse reached with GCS HMAC keys (the keys pgduck_server takes) through
GCS's S3-compatible XML API; moto stands in for GCS behind STORAGE_EMULATOR_HOST."""

import shutil
import tempfile
from pathlib import Path

import pytest
from pyiceberg.catalog.rest import RestCatalog

from lake_testing import CatalogServer, rest_catalog_binary
from rest_catalog_support import SCHEMA


@pytest.fixture(scope="module")
def gcs_catalog_server(postgres_url, moto):
    workdir = Path(tempfile.mkdtemp(prefix="rest-catalog-pytest-gcs-"))
    env = {
        "REST_CATALOG_NAME": "gcslake",
        "GCS_ACCESS_KEY_ID": moto["key"],
        "GCS_SECRET_ACCESS_KEY": moto["secret"],
        "STORAGE_EMULATOR_HOST": moto["endpoint"],
    }
    server = CatalogServer(rest_catalog_binary(), postgres_url, workdir, f"gs://{moto['bucket']}/gcs-warehouse",
                           env=env)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_gcs_warehouse_with_hmac_keys(gcs_catalog_server, moto):
    catalog = RestCatalog("gcslake", uri=gcs_catalog_server.url)
    catalog.create_namespace("gns")
    table = catalog.create_table("gns.t", schema=SCHEMA, properties={"note": "hmac"})
    assert table.metadata_location.startswith(f"gs://{moto['bucket']}/gcs-warehouse/gns/t/metadata/")

    s3 = moto["s3"]
    prefix = "gcs-warehouse/gns/t/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=moto["bucket"], Prefix=prefix)["Contents"]]
    assert keys == [table.metadata_location.removeprefix(f"gs://{moto['bucket']}/")]
    # The catalog reads its metadata back from the bucket.
    assert catalog.load_table("gns.t").properties["note"] == "hmac"

    catalog.purge_table("gns.t")
    assert s3.list_objects_v2(Bucket=moto["bucket"], Prefix=prefix).get("KeyCount", 0) == 0
