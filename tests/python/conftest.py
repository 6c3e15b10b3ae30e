"""Fixtures shared by every end-to-end suite: moto as S3 and a real pgduck_server,
all on 127.0.0.1 or unix sockets inside a temporary directory."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import boto3
import pytest

from lake_testing import free_port, tcp_open, unix_open, wait_for

CACHE = Path(os.environ.get("PG_LAKE_CACHE", Path.home() / ".cache/pg_lake"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", CACHE / "target"))
PGDUCK_BIN = Path(os.environ.get("PGDUCK_SERVER_BIN", TARGET / "debug/pgduck_server"))
DUCKDB_EXTENSIONS = os.environ.get("PG_LAKE_DUCKDB_EXTENSIONS", str(CACHE / "duckdb/extensions"))
S3_BUCKET = "lake"
S3_KEY = "testing-key"
S3_SECRET = "testing-secret"


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="pg_lake_test_"))
    d.chmod(0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def moto(workdir):
    """moto's S3 server on 127.0.0.1 with one bucket, `lake`."""
    port = free_port()
    log = open(workdir / "moto.log", "wb")
    # The virtualenv's pinned moto, not whatever else PATH offers.
    exe = str(Path(os.environ.get("PG_LAKE_VENV", CACHE / "venv")) / "bin/moto_server")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    wait_for(lambda: tcp_open(port), "moto_server")
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_KEY,
                      aws_secret_access_key=S3_SECRET, region_name="us-east-1")
    s3.create_bucket(Bucket=S3_BUCKET)
    yield {"endpoint": endpoint, "port": port, "s3": s3, "bucket": S3_BUCKET,
           "key": S3_KEY, "secret": S3_SECRET}
    proc.terminate()
    proc.wait(10)


class PgduckServer:
    """A running pgduck_server process."""

    def __init__(self, workdir: Path, name: str, env: dict, args=()):
        self.dir = workdir / name
        self.dir.mkdir()
        self.dir.chmod(0o755)
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        # A test may bring its own --cache_dir (to restart on the same cache).
        cache = [] if "--cache_dir" in args else ["--cache_dir", str(workdir / f"{name}-cache")]
        self.proc = subprocess.Popen(
            [str(PGDUCK_BIN), "--unix_socket_directory", str(self.dir), "--port", str(self.port),
             "--extensions_dir", DUCKDB_EXTENSIONS, *cache, *args],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, env={**os.environ, **env},
        )
        sock = self.dir / f".s.PGSQL.{self.port}"
        wait_for(lambda: unix_open(sock) or self.proc.poll() is not None, "pgduck_server")
        if self.proc.poll() is not None:
            raise RuntimeError(self.log.read_text())
        self.conninfo = f"host={self.dir} port={self.port} user=test dbname=duck"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="session")
def start_pgduck(workdir):
    """Starts further pgduck_server processes: `start_pgduck(name, env, args)`."""
    started = []

    def start(name, env, args=()):
        server = PgduckServer(workdir, name, env, args)
        started.append(server)
        return server

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.stop()


@pytest.fixture(scope="session")
def pgduck(workdir, moto):
    """pgduck_server with S3 credentials for moto in its environment."""
    server = PgduckServer(workdir, "duck", {
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto["endpoint"],
        "PG_LAKE_S3_URL_STYLE": "path",
        # gs:// goes to moto too (DuckDB speaks GCS' S3-compatible XML API with HMAC keys).
        "GCS_ACCESS_KEY_ID": S3_KEY,
        "GCS_SECRET_ACCESS_KEY": S3_SECRET,
        "STORAGE_EMULATOR_HOST": moto["endpoint"],
    })
    yield {"dir": str(server.dir), "port": server.port, "proc": server.proc,
           "conninfo": server.conninfo, "log": server.log}
    server.stop()
