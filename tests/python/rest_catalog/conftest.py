"""Fixtures for the REST catalog end-to-end tests: a real Postgres cluster and
the rest_catalog binary in front of it, with a local directory as warehouse."""

import shutil
import tempfile
from pathlib import Path

import pytest

from lake_testing import CatalogServer, PostgresCluster, rest_catalog_binary


@pytest.fixture(scope="session")
def postgres_url():
    pg = PostgresCluster(prefix="rest-catalog-pytest-pg-", settings={"max_connections": 200})
    try:
        yield pg.url
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def catalog_server(postgres_url):
    workdir = Path(tempfile.mkdtemp(prefix="rest-catalog-pytest-"))
    server = CatalogServer(rest_catalog_binary(), postgres_url, workdir, str(workdir / "warehouse"))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def rest_catalog(catalog_server):
    from pyiceberg.catalog.rest import RestCatalog

    return RestCatalog("lake", uri=catalog_server.url)


@pytest.fixture
def namespace(rest_catalog, request):
    """A fresh namespace per test, named after it."""
    name = request.node.name.replace("[", "_").replace("]", "").replace("-", "_")[:60]
    rest_catalog.create_namespace(name)
    return name


@pytest.fixture(scope="session")
def s3_catalog_server(postgres_url, moto):
    """A second catalog (its own catalog name) whose warehouse is in S3, set up
    through the same environment variables the operator gives it."""
    workdir = Path(tempfile.mkdtemp(prefix="rest-catalog-pytest-s3-"))
    env = {
        "REST_CATALOG_NAME": "s3lake",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto["endpoint"],
        "PG_LAKE_S3_URL_STYLE": "path",
        "PG_LAKE_S3_USE_SSL": "false",
        "AWS_ACCESS_KEY_ID": moto["key"],
        "AWS_SECRET_ACCESS_KEY": moto["secret"],
        "REST_CATALOG_VEND_CREDENTIALS": "true",
    }
    server = CatalogServer(rest_catalog_binary(), postgres_url, workdir, f"s3://{moto['bucket']}/warehouse", env=env)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
