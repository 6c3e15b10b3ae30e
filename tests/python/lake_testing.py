"""Helpers every end-to-end suite uses (importable from any suite: pytest puts this
folder on sys.path through the root conftest)."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not come up within {timeout}s")


def tcp_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def unix_open(path) -> bool:
    """True once a server accepts on this unix socket (the file exists a moment before listen())."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.2)
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def terminate(proc, timeout: float, what: str):
    """SIGTERM, then a clean exit (status 0) within `timeout`; killed if it does not stop."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=timeout) == 0, f"{what} exits cleanly on SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()


def as_postgres(cmd: list) -> list:
    """initdb refuses to run as root: run Postgres binaries as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *map(str, cmd)] if os.geteuid() == 0 else list(map(str, cmd))


class PostgresCluster:
    """A throw-away Postgres cluster, the one way every suite starts one: initdb'd and run
    as the postgres OS user when the tests run as root (initdb refuses root, and pods run
    it as postgres), on 127.0.0.1 and a unix socket in its own directory.

    `settings` go to postgresql.conf; `password` turns on scram-sha-256 for TCP clients
    (trust otherwise); the socket always trusts, for the tests' own administration."""

    def __init__(self, prefix: str = "pg-lake-test-pg-", settings: dict | None = None,
                 password: str | None = None, base: Path | None = None):
        self.base = base or Path(tempfile.mkdtemp(prefix=prefix))
        self.base.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.sock.mkdir()
        self.log = self.base / "postgres.log"
        initdb = [PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--encoding=UTF8", "--locale=C.UTF-8",
                  "--no-sync", "--auth-local=trust", f"--auth-host={'scram-sha-256' if password else 'trust'}"]
        if password:
            pwfile = self.base / "initdb.pw"
            pwfile.write_text(password)
            initdb.append(f"--pwfile={pwfile}")
        for p in self.base.iterdir():
            if os.geteuid() == 0:
                shutil.chown(p, "postgres", "postgres")
        subprocess.run(as_postgres(initdb), check=True, capture_output=True)
        if password:
            pwfile.unlink()
        self.host = "127.0.0.1"
        self.port = free_port()
        conf = {"listen_addresses": "127.0.0.1", "port": self.port, "unix_socket_directories": str(self.sock),
                "fsync": "off", **(settings or {})}
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("".join(f"{k} = '{str(v).replace(chr(39), chr(39) * 2)}'\n" for k, v in conf.items()))
        self.start()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self):
        """Starts the server (again, after a stop or a crash)."""
        subprocess.run(as_postgres([PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "start"]),
                       check=True, capture_output=True)

    def stop(self, mode: str = "fast", remove: bool = True):
        subprocess.run(as_postgres([PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "stop"]), capture_output=True)
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)


def rest_catalog_binary() -> Path:
    explicit = os.environ.get("REST_CATALOG_BIN")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    subprocess.run(["cargo", "build", "-q", "-p", "rest_catalog", "--bin", "rest_catalog"], cwd=REPO, check=True)
    return target / "debug" / "rest_catalog"


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
        try:
            terminate(self.proc, 20, "rest_catalog")
        finally:
            self.log.close()
