"""Crash safety of Iceberg commits: kill -9 of a backend at each step of a commit, and
of the postmaster right after one was acknowledged. Each test runs its own Postgres
cluster (wired to the shared pgduck_server), since a killed backend restarts them all."""

import os
import signal
import threading
import time

import psycopg
import pytest

from lake_testing import PostgresCluster


@pytest.fixture
def cluster(workdir, pgduck):
    pg = PostgresCluster(base=workdir / f"crash-{time.monotonic_ns()}", settings={
        "shared_preload_libraries": "pg_lake",
        "pg_lake_engine.host": f"host={pgduck['dir']} port={pgduck['port']}",
        "pg_lake_iceberg.default_location_prefix": "s3://lake/crash-warehouse",
    })
    yield pg
    pg.stop(mode="immediate")


def connect(pg, attempts=100):
    for _ in range(attempts):
        try:
            return psycopg.connect(host=pg.host, port=pg.port, user="postgres", dbname="postgres",
                                   autocommit=True)
        except psycopg.OperationalError:
            time.sleep(0.1)  # crash recovery in progress
    raise RuntimeError("Postgres did not come back")


def setup_table(pg):
    db = connect(pg)
    db.execute("CREATE EXTENSION IF NOT EXISTS pg_lake")
    db.execute("CREATE TABLE t (x int) USING iceberg")
    db.execute("INSERT INTO t VALUES (1)")
    return db


@pytest.mark.parametrize("step", ["data", "manifests", "metadata", "swapped"])
def test_a_backend_killed_at_any_step_of_a_commit_leaves_the_transaction_absent(cluster, step):
    db = setup_table(cluster)
    before = db.execute("SELECT metadata_location FROM lake_catalog.iceberg_tables").fetchone()[0]
    victim = connect(cluster)
    pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
    victim.execute(f"SET pg_lake_iceberg.debug_pause_at = '{step}'")
    victim.execute("BEGIN")
    victim.execute("INSERT INTO t VALUES (2), (3)")
    threading.Thread(target=lambda: _commit_quietly(victim), daemon=True).start()
    deadline = time.time() + 20
    while time.time() < deadline:  # wait until the commit is paused at the step
        state = db.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        if state and state[0] == "Extension":
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the commit never reached step {step}")
    logged = cluster.log.stat().st_size
    os.kill(pid, signal.SIGKILL)
    wait_for_crash_restart(cluster, logged)
    after = connect(cluster)
    assert after.execute("SELECT array_agg(x) FROM t").fetchone() == ([1],), \
        "the killed transaction is entirely absent"
    assert after.execute("SELECT metadata_location FROM lake_catalog.iceberg_tables").fetchone()[0] == before
    after.execute("INSERT INTO t VALUES (4)")  # and the table takes commits again
    assert after.execute("SELECT array_agg(x ORDER BY x) FROM t").fetchone() == ([1, 4],)


def wait_for_crash_restart(pg, logged, timeout=60):
    """Waits until the postmaster has noticed the killed backend, ended every session and
    come back: a connection made before that would be cut by the crash restart."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(pg.log, "rb") as f:
            f.seek(logged)
            tail = f.read().decode(errors="replace")
        at = tail.find("all server processes terminated; reinitializing")
        if at >= 0 and "database system is ready to accept connections" in tail[at:]:
            return
        time.sleep(0.1)
    raise RuntimeError("Postgres did not restart after the crash")


def _commit_quietly(conn):
    try:
        conn.execute("COMMIT")
    except psycopg.Error:
        pass  # the backend is killed under it


def test_an_acknowledged_commit_survives_kill_9_of_the_postmaster(cluster):
    db = setup_table(cluster)
    db.execute("BEGIN")
    db.execute("INSERT INTO t VALUES (2)")
    db.execute("CREATE TABLE other (y int) USING iceberg")
    db.execute("INSERT INTO other VALUES (7)")
    db.execute("COMMIT")
    pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    db.close()
    deadline = time.time() + 30
    while time.time() < deadline:  # its backends exit once they notice it is gone
        try:
            cluster.start()
            break
        except Exception:
            time.sleep(0.5)
    after = connect(cluster)
    assert after.execute("SELECT (SELECT array_agg(x ORDER BY x) FROM t), (SELECT array_agg(y) FROM other)"
                         ).fetchone() == ([1, 2], [7])


def test_pgduck_server_killed_mid_commit_leaves_all_or_nothing(workdir, start_pgduck, localdir):
    """kill -9 of pgduck_server while a commit is paused after writing its manifests:
    the commit either lands whole or not at all, and once pgduck_server is back the
    same backends (their pooled connections dead) take statements and commits again."""
    duck = start_pgduck(f"crashduck{time.monotonic_ns()}", {})
    pg = PostgresCluster(base=workdir / f"crash-duck-{time.monotonic_ns()}", settings={
        "shared_preload_libraries": "pg_lake",
        "pg_lake_engine.host": f"host={duck.dir} port={duck.port}",
        "pg_lake_iceberg.default_location_prefix": str(localdir),
    })
    try:
        db = setup_table(pg)
        victim = connect(pg)
        pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
        victim.execute("SET pg_lake_iceberg.debug_pause_at = 'manifests'")
        victim.execute("BEGIN")
        victim.execute("INSERT INTO t VALUES (2), (3)")
        outcome = {}

        def commit():
            try:
                victim.execute("COMMIT")
                outcome["committed"] = True
            except psycopg.Error as e:
                outcome["committed"] = False
                outcome["error"] = e

        committer = threading.Thread(target=commit, daemon=True)
        committer.start()
        deadline = time.time() + 20
        while time.time() < deadline:
            state = db.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            if state and state[0] == "Extension":
                break
            time.sleep(0.05)
        else:
            pytest.fail("the commit never paused")
        duck.proc.send_signal(signal.SIGKILL)
        duck.proc.wait(10)
        duck.start()
        committer.join(60)
        assert not committer.is_alive(), "COMMIT never returned"
        if not outcome["committed"]:
            assert outcome["error"].sqlstate and outcome["error"].sqlstate[:2] not in ("XX",), outcome["error"]
        expected = [1, 2, 3] if outcome["committed"] else [1]
        for session in (db, victim):  # their pooled connections died with the server
            assert session.execute("SELECT array_agg(x ORDER BY x) FROM t").fetchone()[0] == expected
        victim.execute("RESET pg_lake_iceberg.debug_pause_at")
        victim.execute("INSERT INTO t VALUES (4)")
        assert db.execute("SELECT array_agg(x ORDER BY x) FROM t").fetchone()[0] == expected + [4]
    finally:
        pg.stop(mode="immediate")
