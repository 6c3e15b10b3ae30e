"""Runs `pg_lake_local` (what `scripts/appliance.sh` execs after installing and building)
the way a user would, and reads what it prints."""

import os
import pwd
import random
import re
import socket
import subprocess
import time
from pathlib import Path

from lake_testing import REPO, terminate

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/pg_lake/target"))
LAUNCHER = Path(os.environ.get("PG_LAKE_LOCAL_BIN", TARGET / "debug/pg_lake_local"))


def build(*packages):
    """Builds the binaries the suite runs, unless PG_LAKE_TEST_PREBUILT=1 says they are built."""
    if os.environ.get("PG_LAKE_TEST_PREBUILT") == "1":
        return
    args = " ".join(f"-p {p}" for p in packages)
    subprocess.run(["bash", "-c", f"source scripts/env.sh && cargo build -q --bins {args}"], cwd=REPO, check=True)


def unused_port() -> int:
    """A free port below the ephemeral range: kernel-chosen ports (free_port) can be taken
    by any outgoing connection, e.g. the catalog's own to Postgres, before a server binds."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(20000, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def free_ports():
    return {"postgres": unused_port(), "catalog": unused_port(), "pgduck": unused_port()}


def launcher_args(data_dir: Path, ports: dict, extra=()):
    return [str(LAUNCHER), "--data-dir", str(data_dir), "--port", str(ports["postgres"]),
            "--catalog-port", str(ports["catalog"]), "--pgduck-port", str(ports["pgduck"]), *extra]


def run_to_failure(data_dir: Path, ports: dict, env=None, timeout=120):
    """Runs the launcher expecting it to give up: (exit code, everything it printed)."""
    out = subprocess.run(launcher_args(data_dir, ports), env={**os.environ, **(env or {})},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return out.returncode, out.stdout


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def owner_uid(pid: int) -> int:
    line = next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("Uid:"))
    return int(line.split()[1])


class Appliance:
    def __init__(self, data_dir: Path, ports: dict, env=None, extra=(), user=None):
        """`user`: start the launcher as this OS user (the caller must be root)."""
        self.data_dir = data_dir
        self.ports = ports
        self.run_dir = data_dir / "run"
        self.proc = subprocess.Popen(launcher_args(data_dir, ports, extra), env={**os.environ, **(env or {})},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     user=user, group=user and pwd.getpwnam(user).pw_gid,
                                     extra_groups=[] if user else None, cwd="/" if user else None)
        self.printed = []
        deadline = time.monotonic() + 120
        while not any(line.startswith("  logs:") for line in self.printed):
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"pg_lake_local exited ({self.proc.wait()}): {''.join(self.printed)}")
            self.printed.append(line)
            assert time.monotonic() < deadline, "pg_lake_local did not come up within 120 s"
        text = "".join(self.printed)
        self.postgres_url = re.search(r'psql "([^"]+)"', text).group(1)
        socket_command = re.search(r"^  (psql -h .*?)   \(peer", text, re.M)
        self.socket_command = socket_command and socket_command.group(1)
        self.catalog_url = re.search(r"Iceberg REST catalog: (\S+)", text).group(1)

    def children(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid), "-a"], capture_output=True, text=True).stdout
        return {line.split()[1].rsplit("/", 1)[-1]: int(line.split()[0]) for line in out.splitlines()}

    def output_until(self, predicate, timeout=60):
        """Reads what the launcher prints until `predicate(line)` holds; returns the lines read."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if predicate(line):
                return seen
        raise AssertionError(f"not printed within {timeout}s: {''.join(seen)}")

    def stop(self):
        children = self.children()
        terminate(self.proc, 60, "pg_lake_local")
        for pid in children.values():
            assert not pid_alive(pid), f"child {pid} still runs after the appliance stopped"
