"""Issue 11 item 19 / issue 13's one contract: the shared storage environment means the
same thing to every process. Each spelling Postgres takes for "off" turns TLS off in
pgduck_server, in rest_catalog and in the appliance launcher (which hands the endpoint
to its children), checked by real traffic to moto over plain HTTP; a spelling none of
them accepts stops each of them with an error naming the variable.

Before: `0`/`off` meant "no TLS" to pgduck_server, "TLS" to the appliance (which wrote
https:// into its children's endpoint) and stopped rest_catalog ("invalid value")."""

import uuid

import psycopg
import pytest
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField

from appliance_support import Appliance, free_ports, run_to_failure
from lake_testing import CatalogServer, PostgresCluster, rest_catalog_binary

OFF = ["0", "off", "FALSE", "no"]
BAD = ["maybe", "disable", "f"]


def storage_env(moto, use_ssl):
    host = moto["endpoint"].removeprefix("http://")  # no scheme: PG_LAKE_S3_USE_SSL alone decides
    return {"AWS_ACCESS_KEY_ID": moto["key"], "AWS_SECRET_ACCESS_KEY": moto["secret"], "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": host, "PG_LAKE_S3_URL_STYLE": "path", "PG_LAKE_S3_USE_SSL": use_ssl}


@pytest.fixture(scope="module")
def catalog_db():
    pg = PostgresCluster(prefix="shared-settings-pg-")
    yield pg
    pg.stop()


@pytest.mark.parametrize("spelling", OFF)
def test_off_means_plain_http_in_pgduck_server(spelling, moto, start_pgduck):
    key = f"shared-settings/{uuid.uuid4().hex}.csv"
    moto["s3"].put_object(Bucket=moto["bucket"], Key=key, Body=b"a\n1\n2\n")
    server = start_pgduck(f"ssl-{spelling}-{uuid.uuid4().hex[:6]}", storage_env(moto, spelling))
    with psycopg.connect(server.conninfo, autocommit=True) as c:
        assert c.execute(f"SELECT count(*) FROM read_csv('s3://{moto['bucket']}/{key}')").fetchone() == (2,)
    server.stop()


@pytest.mark.parametrize("spelling", OFF)
def test_off_means_plain_http_in_rest_catalog(spelling, moto, catalog_db, tmp_path):
    name = f"ssl{uuid.uuid4().hex[:8]}"
    server = CatalogServer(rest_catalog_binary(), catalog_db.url, tmp_path, f"s3://{moto['bucket']}/{name}",
                           env={**storage_env(moto, spelling), "REST_CATALOG_NAME": name})
    try:
        catalog = RestCatalog(name, uri=server.url)
        catalog.create_namespace("ns")
        table = catalog.create_table("ns.t", schema=Schema(NestedField(1, "id", LongType(), required=False)))
        key = table.metadata_location.removeprefix(f"s3://{moto['bucket']}/")
        assert moto["s3"].head_object(Bucket=moto["bucket"], Key=key)["ContentLength"] > 0
    finally:
        server.stop()


@pytest.mark.parametrize("spelling", BAD)
def test_a_spelling_no_process_accepts_stops_each_naming_the_variable(spelling, moto, start_pgduck, catalog_db,
                                                                      tmp_path):
    env = storage_env(moto, spelling)
    with pytest.raises(RuntimeError) as e:
        start_pgduck(f"bad-{spelling}-{uuid.uuid4().hex[:6]}", env)
    assert f'PG_LAKE_S3_USE_SSL: "{spelling}" is not a boolean' in str(e.value)

    with pytest.raises(RuntimeError) as e:
        CatalogServer(rest_catalog_binary(), catalog_db.url, tmp_path, f"s3://{moto['bucket']}/bad", env=env)
    log = next(tmp_path.glob("rest_catalog-*.log")).read_text()
    assert f'PG_LAKE_S3_USE_SSL: "{spelling}" is not a boolean' in log, log

    code, out = run_to_failure(tmp_path / "appliance", free_ports(), env=env)
    assert code == 1 and f'PG_LAKE_S3_USE_SSL: "{spelling}" is not a boolean' in out, out


def test_off_means_plain_http_in_the_appliance_and_its_children(moto, data_dir):
    env = storage_env(moto, "0")
    prefix = f"appliance-{uuid.uuid4().hex[:8]}"
    app = Appliance(data_dir, free_ports(), env=env, extra=["--warehouse", f"s3://{moto['bucket']}/{prefix}"])
    try:
        pgduck = app.children()["pgduck_server"]
        environ = dict(kv.split("=", 1) for kv in open(f"/proc/{pgduck}/environ").read().split("\0") if "=" in kv)
        assert environ["AWS_ENDPOINT_URL"] == moto["endpoint"], "the launcher hands on plain http://"
        with psycopg.connect(app.postgres_url, autocommit=True) as db:
            db.execute(f"COPY (SELECT 1 AS a) TO 's3://{moto['bucket']}/{prefix}/x.csv'")
        assert moto["s3"].get_object(Bucket=moto["bucket"], Key=f"{prefix}/x.csv")["Body"].read() == b"1\n"
        catalog = RestCatalog("local", uri=app.catalog_url)
        catalog.create_namespace("ns")
        table = catalog.create_table("ns.t", schema=Schema(NestedField(1, "id", LongType(), required=False)))
        assert table.metadata_location.startswith(f"s3://{moto['bucket']}/{prefix}/")
    finally:
        app.stop()
