"""Fixtures shared by every end-to-end suite: moto as S3 and a real pgduck_server,
all on 127.0.0.1 or unix sockets inside a temporary directory.

pgduck_server runs as a pod runs it: as the `postgres` OS user (when the tests run as
root), in a socket directory private to that user, with the memory limit the operator
gives the sidecar of examples/local-dev.yaml (1Gi, of which DuckDB gets 80 %: 819MiB;
PGDUCK_TEST_MEMORY_LIMIT changes it)."""

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
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
# What the operator passes for examples/local-dev.yaml's `pgduck: {memoryLimit: 1Gi, threads: 2}`.
POD_PGDUCK_FLAGS = {"--memory_limit": os.environ.get("PGDUCK_TEST_MEMORY_LIMIT", "819MiB"), "--threads": "2"}
# The OS user every server of a node runs as (pg_lake_common::wiring::NODE_OS_USER).
NODE_USER = "postgres" if os.geteuid() == 0 else None
NODE_HOME = {"HOME": pwd.getpwnam(NODE_USER).pw_dir} if NODE_USER else {}


def node_owned(path: Path, mode: int) -> Path:
    """`path` for the node's user only (as the wiring's socket directory is)."""
    if NODE_USER:
        shutil.chown(path, NODE_USER, NODE_USER)
    path.chmod(mode)
    return path


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="pg_lake_test_"))
    d.chmod(0o777)
    yield d
    if os.environ.get("PG_LAKE_KEEP_TEST_DIR"):  # for a look at the servers' logs
        print(f"\nkept {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tmp_path(workdir, request):
    """pytest's tmp_path, but where the servers (running as `postgres`) can reach it:
    pytest's own base, /tmp/pytest-of-root, is mode 0700."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:60]
    d = workdir / "tmp" / f"{name}-{uuid.uuid4().hex[:6]}"
    d.mkdir(parents=True)
    (workdir / "tmp").chmod(0o755)
    return node_owned(d, 0o755)


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
        node_owned(self.dir, 0o700)
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        # A test may bring its own --cache_dir (to restart on the same cache) or limits.
        defaults = {"--cache_dir": str(workdir / f"{name}-cache"), **POD_PGDUCK_FLAGS}
        extra = [a for flag, value in defaults.items() if flag not in args for a in (flag, value)]
        self._spawn = lambda: subprocess.Popen(
            [str(PGDUCK_BIN), "--unix_socket_directory", str(self.dir), "--port", str(self.port),
             "--extensions_dir", DUCKDB_EXTENSIONS, *extra, *args],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env={**os.environ, **NODE_HOME, "NO_COLOR": "1", **env},
            user=NODE_USER, group=NODE_USER, extra_groups=[] if NODE_USER else None, cwd="/",
        )
        self.start()
        self.conninfo = f"host={self.dir} port={self.port} user=test dbname=duck"

    def start(self):
        """Starts the server (again, after a kill: same socket, port and cache)."""
        self.proc = self._spawn()
        sock = self.dir / f".s.PGSQL.{self.port}"
        wait_for(lambda: unix_open(sock) or self.proc.poll() is not None, "pgduck_server")
        if self.proc.poll() is not None:
            raise RuntimeError(self.log.read_text())

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
