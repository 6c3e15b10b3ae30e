"""Fixtures for the REST catalog end-to-end tests: a real Postgres cluster and
the rest_catalog binary in front of it, with a local directory as warehouse."""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from lake_testing import PG_BIN, as_postgres, free_port

REPO = Path(__file__).resolve().parents[3]


def rest_catalog_binary() -> Path:
    explicit = os.environ.get("REST_CATALOG_BIN")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    subprocess.run(["cargo", "build", "-q", "-p", "rest_catalog", "--bin", "rest_catalog"], cwd=REPO, check=True)
    return target / "debug" / "rest_catalog"


@pytest.fixture(scope="session")
def postgres_url():
    base = Path(tempfile.mkdtemp(prefix="rest-catalog-pytest-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data = base / "data"
    subprocess.run(
        as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(
        as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o", options, "start"]),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


class CatalogServer:
    """The rest_catalog binary; its log goes to `workdir`."""

    def __init__(self, binary: Path, database_url: str, workdir: Path, warehouse: str, extra=(), env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.warehouse = warehouse
        self.log = open(workdir / f"rest_catalog-{self.port}.log", "wb")
        self.proc = subprocess.Popen(
            [
                str(binary),
                "--listen", f"127.0.0.1:{self.port}",
                "--database-url", database_url,
                "--warehouse", warehouse,
                "--auth", "none",
                "--log-format", "text",
                *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        deadline = time.time() + 60
        while True:
            try:
                if requests.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"rest_catalog did not become ready; see {self.log.name}")
            time.sleep(0.1)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(timeout=20) == 0, "rest_catalog exits cleanly on SIGTERM"
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log.close()


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
