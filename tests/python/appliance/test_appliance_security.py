"""Issue 11 item 1: started as root, the appliance must not hand a local user root or the
Postgres superuser. Every process runs as `postgres`, the sockets sit in a directory only
`postgres` may enter, Postgres asks for peer authentication on its socket and a password
(scram-sha-256) on TCP, and that password is readable by the invoking user only. The
user `nobody` tries each way in; the owner must still get in the ways the launcher prints."""

import os
import pwd
import stat
import subprocess

import psycopg
import pytest

from appliance_support import Appliance, free_ports, owner_uid
from lake_testing import PG_BIN

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="checks what root's appliance gives other users")


def as_nobody(*args, env=None):
    return subprocess.run(["runuser", "-u", "nobody", "--", *map(str, args)], capture_output=True, text=True,
                          cwd="/", env={"PATH": os.environ["PATH"], **(env or {})}, timeout=30)


def nobody_psql(*conn, env=None):
    return as_nobody(PG_BIN / "psql", "-X", "-w", *conn, "-c", "SELECT 1", env=env)


def test_nobody_gets_nothing_and_the_owner_everything(data_dir):
    ports = free_ports()
    app = Appliance(data_dir, ports)
    try:
        postgres_uid = pwd.getpwnam("postgres").pw_uid
        children = app.children()
        assert set(children) == {"pgduck_server", "postgres", "rest_catalog"}
        for name, pid in children.items():
            assert owner_uid(pid) == postgres_uid, f"{name} runs as uid {owner_uid(pid)}"

        for d in [data_dir, app.run_dir, data_dir / "logs"]:
            st = d.stat()
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (postgres_uid, 0o700), d
        for log in (data_dir / "logs").iterdir():
            assert stat.S_IMODE(log.stat().st_mode) == 0o600, log
        pgpass = data_dir / "pgpass"
        assert (pgpass.stat().st_uid, stat.S_IMODE(pgpass.stat().st_mode)) == (0, 0o600)

        # nobody: pgduck_server's socket (no authentication of its own) is out of reach ...
        r = nobody_psql("-h", app.run_dir, "-p", ports["pgduck"])
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
        # ... so is Postgres' socket ...
        r = nobody_psql("-h", app.run_dir, "-p", ports["postgres"], "-U", "postgres")
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
        # ... TCP wants the password, which nobody can read, and a guess fails.
        tcp = f"host=127.0.0.1 port={ports['postgres']} user=postgres dbname=postgres"
        r = nobody_psql(tcp)
        assert r.returncode != 0 and "no password supplied" in r.stderr, r
        r = nobody_psql(app.postgres_url)
        assert r.returncode != 0 and "no password supplied" in r.stderr, r
        r = nobody_psql(tcp, env={"PGPASSWORD": "postgres"})
        assert r.returncode != 0 and "password authentication failed" in r.stderr, r
        for secret in [pgpass, data_dir / "logs/postgres.log", data_dir / "pgdata/pg_hba.conf"]:
            r = as_nobody("cat", secret)
            assert r.returncode != 0 and "Permission denied" in r.stderr, (secret, r)

        # The owner: both printed connection commands work, as the superuser.
        with psycopg.connect(app.postgres_url, autocommit=True) as db:
            assert db.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)
        printed = app.socket_command.split() + ["-X", "-Atc", "SELECT current_user"]
        r = subprocess.run(printed, capture_output=True, text=True, timeout=30)
        assert (r.returncode, r.stdout.strip()) == (0, "postgres"), r

        # pgduck_server reads files as postgres, not root: even the owner cannot reach
        # /etc/shadow through it.
        r = subprocess.run([PG_BIN / "psql", "-X", "-h", app.run_dir, "-p", str(ports["pgduck"]),
                            "-c", "SELECT * FROM read_csv('/etc/shadow')"], capture_output=True, text=True)
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
    finally:
        app.stop()



def test_an_ordinary_user_runs_it_as_itself(data_dir):
    """Started by a user other than root, every process runs as that user, and the
    printed connection works for it."""
    data_dir.parent.chmod(0o777)
    app = Appliance(data_dir, free_ports(), user="nobody")
    try:
        nobody_uid = pwd.getpwnam("nobody").pw_uid
        children = app.children()
        assert set(children) == {"pgduck_server", "postgres", "rest_catalog"}
        for name, pid in children.items():
            assert owner_uid(pid) == nobody_uid, f"{name} runs as uid {owner_uid(pid)}"
        assert (data_dir / "pgpass").stat().st_uid == nobody_uid
        r = as_nobody(PG_BIN / "psql", "-X", "-w", app.postgres_url, "-Atc", "SELECT current_user")
        assert (r.returncode, r.stdout.strip()) == (0, "postgres"), r
        r = as_nobody(*app.socket_command.split(), "-X", "-Atc", "SELECT 1")
        assert (r.returncode, r.stdout.strip()) == (0, "1"), r
    finally:
        app.stop()
