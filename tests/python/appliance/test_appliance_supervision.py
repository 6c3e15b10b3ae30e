"""Issue 11 items 16 and 19: the launcher supervises its children. A child that dies is
restarted; one that keeps failing stops the appliance with a message naming it and its
last log lines; a launcher killed with SIGKILL takes its children along; readiness is
never satisfied by a process that is not the launcher's own child; a child that fails at
start-up is named with its log, not "did not become ready within 60s"; `--help` is instant."""

import os
import signal
import socket
import subprocess
import time

import psycopg
import pytest
import requests

from appliance_support import LAUNCHER, Appliance, free_ports, pid_alive, run_to_failure
from lake_testing import REPO, wait_for


def test_help_is_instant_and_succeeds(appliance_build):
    for cmd in (["bash", REPO / "scripts/appliance.sh", "--help"], [LAUNCHER, "-h"]):
        started = time.monotonic()
        r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r
        assert "--data-dir DIR" in r.stdout and "PG_LAKE_S3_USE_SSL" in r.stdout
        assert time.monotonic() - started < 5, "--help runs no installer"
    r = subprocess.run([str(LAUNCHER), "--bogus", "x"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr


def query_through_the_extension(url, target):
    """COPY through pgduck_server and read it back; retried while a restarted child comes back."""
    def works():
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as db:
                db.execute(f"COPY (SELECT 1 AS a) TO '{target}'")
                return db.execute(f"SELECT * FROM lake_file.preview('{target}')").fetchall() != []
        except psycopg.Error:
            return False
    wait_for(works, "a statement through pgduck_server", timeout=60)


def test_a_dead_child_is_restarted_and_one_that_keeps_failing_stops_everything(data_dir):
    app = Appliance(data_dir, free_ports())
    try:
        target = data_dir / "warehouse/x.parquet"
        query_through_the_extension(app.postgres_url, target)
        before = app.children()
        for name in ["pgduck_server", "rest_catalog", "postgres"]:
            os.kill(before[name], signal.SIGKILL)
            lines = app.output_until(lambda l: f"{name} is running again" in l)
            assert any(f"{name} exited on signal 9; restarting it" in l for l in lines), lines
            assert app.children()[name] != before[name]
        query_through_the_extension(app.postgres_url, target)
        assert requests.get(f"{app.catalog_url}/v1/config", timeout=10).status_code == 200

        # Now pgduck_server cannot start any more (its cache is out of its reach): after a
        # few restarts with backoff the launcher stops everything and says why.
        (data_dir / "cache").chmod(0)
        children = app.children()
        os.kill(children["pgduck_server"], signal.SIGKILL)
        lines = app.output_until(lambda l: "keeps failing" in l, timeout=120)
        rest = app.proc.stdout.read()
        assert app.proc.wait(timeout=60) == 1
        message = "".join(lines) + rest
        assert "pgduck_server exited with status" in message and "stopping the appliance" in message, message
        assert "cache" in message.split("keeps failing", 1)[1], "the log lines say what went wrong"
        for pid in app.children().values() or children.values():
            wait_for(lambda: not pid_alive(pid), f"child {pid} to stop", timeout=30)
    finally:
        (data_dir / "cache").chmod(0o700)
        if app.proc.poll() is None:
            app.stop()


def test_a_killed_launcher_takes_its_children_along_and_the_next_start_is_its_own(data_dir):
    ports = free_ports()
    app = Appliance(data_dir, ports)
    children = app.children()
    app.proc.kill()
    app.proc.wait()
    for name, pid in children.items():
        wait_for(lambda: not pid_alive(pid), f"{name} ({pid}) to die with the launcher", timeout=30)

    again = Appliance(data_dir, ports)
    try:
        mine = again.children()
        assert set(mine) == {"pgduck_server", "postgres", "rest_catalog"}
        assert not set(mine.values()) & set(children.values())
        with psycopg.connect(again.postgres_url, autocommit=True) as db:
            assert db.execute("SELECT pg_backend_pid() > 0").fetchone() == (True,)
            pid = int(db.execute("SELECT pg_postmaster_start_time() IS NOT NULL, "
                                 "(pg_read_file('postmaster.pid', 0, 16))").fetchone()[1].split()[0])
        assert pid == mine["postgres"]
    finally:
        again.stop()


def test_readiness_is_never_satisfied_by_a_stranger(data_dir):
    ports = free_ports()
    stranger = socket.socket()
    stranger.bind(("127.0.0.1", ports["catalog"]))
    stranger.listen()
    try:
        code, out = run_to_failure(data_dir, ports)
    finally:
        stranger.close()
    assert code == 1 and "pg_lake is running" not in out, out
    assert f"port {ports['catalog']} on 127.0.0.1, meant for the REST catalog, is taken by another process" in out

    run = data_dir / "run"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(run / f".s.PGSQL.{ports['pgduck']}"))
    sock.listen()
    try:
        code, out = run_to_failure(data_dir, ports)
    finally:
        sock.close()
    assert code == 1 and "pg_lake is running" not in out, out
    assert f".s.PGSQL.{ports['pgduck']} is served by another process" in out


def test_a_child_failing_at_start_is_named_with_its_last_log_lines(data_dir):
    code, out = run_to_failure(data_dir, free_ports(), env={"PGDUCK_MEMORY_LIMIT": "lots"})
    assert code == 1, out
    assert "pgduck_server exited with status 1 before it was ready" in out, out
    assert '--memory_limit "lots"' in out, "the child's own error, from its log"
    assert "did not become ready" not in out
