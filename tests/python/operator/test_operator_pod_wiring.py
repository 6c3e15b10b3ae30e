"""The pgduck_server wiring `render` puts in the pod runs for real: the sidecar's
command line and environment start the real pgduck_server, and Postgres' GUC
`pg_lake_engine.host` reaches it over the socket."""

import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import yaml

from lake_operator_support import DUCKDB_EXTENSIONS, EXAMPLES, operator_bin, pgduck_bin, run_operator  # noqa: F401 (fixtures)


def rendered_pod(operator_bin, example):
    result = run_operator(operator_bin, "render", str(example))
    assert result.returncode == 0, result.stderr
    objects = [d for d in yaml.safe_load_all(result.stdout) if d]
    sts = next(o for o in objects if o["kind"] == "StatefulSet")
    conf = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["postgresql.conf"]
    return sts["spec"]["template"]["spec"], conf


def conf_value(conf: str, name: str) -> str:
    line = next(l for l in conf.splitlines() if l.startswith(f"{name} = "))
    return line.split(" = ", 1)[1].strip("'")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_sidecar_wiring_starts_the_real_pgduck_server(operator_bin, pgduck_bin, example):
    pod, conf = rendered_pod(operator_bin, example)
    pgduck = next(c for c in pod["containers"] if c["name"] == "pgduck")
    mounts = {m["mountPath"] for m in pgduck["volumeMounts"]}
    with tempfile.TemporaryDirectory() as tmp:
        # Each pod volume becomes a directory of its own here; what the image
        # ships (the DuckDB extensions) is the machine's extension directory.
        relocate = {path: Path(tmp, f"volume{i}") for i, path in enumerate(sorted(mounts))}
        for d in relocate.values():
            d.mkdir()
        image_dir = next(a for a in pgduck["args"] if a.startswith("--extensions_dir=")).split("=", 1)[1]
        relocate[image_dir] = DUCKDB_EXTENSIONS

        def local(arg: str) -> str:
            for path, d in relocate.items():
                arg = arg.replace(f"={path}", f"={d}")
            return arg

        args = [local(a) for a in pgduck["args"]]
        env = {e["name"]: e.get("value", "from-a-secret") for e in pgduck.get("env", [])}
        env.update(PATH="/usr/bin:/bin", HOME=tmp)
        socket_dir = next(a for a in args if a.startswith("--unix_socket_directory=")).split("=", 1)[1]
        proc = subprocess.Popen([str(pgduck_bin), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            # What Postgres is told (pg_lake_engine.host), pointed at the relocated socket.
            host = conf_value(conf, "pg_lake_engine.host")
            conninfo = host.replace(host.split()[0], f"host={socket_dir}")
            deadline = time.monotonic() + 30
            while True:
                try:
                    conn = psycopg.connect(f"{conninfo} user=postgres dbname=postgres", autocommit=True)
                    break
                except psycopg.OperationalError:
                    assert proc.poll() is None, proc.stdout.read().decode()
                    assert time.monotonic() < deadline, "pgduck_server did not start"
                    time.sleep(0.1)
            with conn:
                assert conn.execute("SELECT 40 + 2").fetchone() == (42,)
                lc = yaml.safe_load(example.read_text())
                threads = lc["spec"].get("pgduck", {}).get("threads")
                if threads:
                    assert conn.execute("SELECT current_setting('threads')").fetchone()[0] == threads
        finally:
            proc.terminate()
            proc.wait(timeout=10)
