"""The pod `render` prints runs for real, on this machine: the pgduck_server
sidecar with its rendered command line and environment, Postgres with pg_lake and
the rendered postgresql.conf, both as the postgres user sharing one socket
directory; then the extension Job's psql command with its rendered environment.
The only changes are where volumes live (a directory each), loopback instead of
the Service's DNS name, and a free TCP port."""

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lake_testing import PG_BIN, as_postgres, free_port, unix_open
from lake_operator_support import (  # noqa: F401 (fixtures)
    DUCKDB_EXTENSIONS,
    EXAMPLES,
    env_as_kubernetes_sets_it,
    operator_bin,
    pgduck_bin,
    run_operator,
)

PASSWORD = "s3cret-Passw0rd"


def wait_for(predicate, what, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"{what}: the process exited: {proc.stdout.read().decode()}"
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.1)


def service_account_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "client_email": "lake@example.iam.gserviceaccount.com",
                       "private_key": pem, "token_uri": "http://127.0.0.1:9/token"})


class Pod:
    """The rendered objects of one example, with each pod volume relocated to a directory."""

    def __init__(self, operator_bin, example, base: Path):
        result = run_operator(operator_bin, "render", str(example))
        assert result.returncode == 0, result.stderr
        self.objects = [d for d in yaml.safe_load_all(result.stdout) if d]
        self.example = yaml.safe_load(example.read_text())
        sts = self.of_kind("StatefulSet")
        self.spec = sts["spec"]["template"]["spec"]
        self.postgres, self.pgduck = self.spec["containers"]
        mounts = {m["mountPath"] for c in self.spec["containers"] for m in c["volumeMounts"]}
        self.dirs = {path: base / f"volume{i}" for i, path in enumerate(sorted(mounts))}
        for d in self.dirs.values():
            d.mkdir()
        # What the pgduck-server image ships is this machine's DuckDB extension directory.
        image_dir = next(a for a in self.pgduck["args"] if a.startswith("--extensions_dir=")).split("=", 1)[1]
        self.dirs[image_dir] = DUCKDB_EXTENSIONS
        secret = self.of_kind("Secret")
        self.secrets = {
            (secret["metadata"]["name"], "username"): secret["stringData"]["username"],
            (secret["metadata"]["name"], "password"): PASSWORD,
        }
        creds = self.example["spec"]["objectStorage"].get("credentials", {}).get("s3KeysSecret")
        if creds:
            self.secrets[(creds["name"], "accessKeyId")] = "AKIAEXAMPLE"
            self.secrets[(creds["name"], "secretAccessKey")] = "example-secret"
        gcs_key = self.example["spec"]["objectStorage"].get("credentials", {}).get("gcsKeySecret")
        if gcs_key:
            # What kubelet mounts from the Secret: a service-account key. Its token endpoint
            # is unreachable here; pgduck_server retries it in the background.
            volume = next(v["name"] for v in self.spec["volumes"]
                          if v.get("secret", {}).get("secretName") == gcs_key["name"])
            mount = next(m["mountPath"] for c in self.spec["containers"] for m in c["volumeMounts"]
                         if m["name"] == volume)
            (self.dirs[mount] / gcs_key["key"]).write_text(service_account_key())

    def of_kind(self, kind):
        return next(o for o in self.objects if o["kind"] == kind)

    def local(self, text: str) -> str:
        """`text` with pod paths replaced by their directories here."""
        for path in sorted(self.dirs, key=len, reverse=True):
            text = text.replace(path, str(self.dirs[path]))
        return text

    def env(self, container) -> dict:
        env = {k: self.local(v) for k, v in env_as_kubernetes_sets_it(container, self.secrets).items()}
        env.update(PATH="/usr/bin:/bin:/usr/sbin:/sbin", HOME=str(self.dirs[next(iter(self.dirs))]))
        return env


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_rendered_pod_runs_and_the_extension_job_installs_pg_lake(operator_bin, pgduck_bin, example):
    base = Path(tempfile.mkdtemp(prefix="lake-operator-pod-"))
    procs = []
    try:
        pod = Pod(operator_bin, example, base)
        if os.geteuid() == 0:
            for d in [base, *[d for d in pod.dirs.values() if str(d).startswith(str(base))]]:
                shutil.chown(d, "postgres", "postgres")

        # The sidecar, exactly as rendered.
        pgduck = subprocess.Popen(as_postgres([str(pgduck_bin), *[pod.local(a) for a in pod.pgduck["args"]]]),
                                  env=pod.env(pod.pgduck), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(pgduck)

        # The ConfigMap, mounted where the postgres container's args expect it.
        conf_dir = next(m["mountPath"] for m in pod.postgres["volumeMounts"] if m["name"] == "config")
        conf = pod.of_kind("ConfigMap")["data"]["postgresql.conf"]
        (pod.dirs[conf_dir] / "postgresql.conf").write_text(pod.local(conf))

        # initdb as the image's entrypoint does with POSTGRES_USER / POSTGRES_PASSWORD.
        env = pod.env(pod.postgres)
        pwfile = base / "pw"
        pwfile.write_text(env["POSTGRES_PASSWORD"])
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        initdb = [str(PG_BIN / "initdb"), "-D", env["PGDATA"], "-U", env["POSTGRES_USER"], f"--pwfile={pwfile}",
                  "--auth-host=scram-sha-256", "--auth-local=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]
        subprocess.run(as_postgres(initdb), check=True, capture_output=True, env=env)
        port = free_port()
        args = [pod.local(a) for a in pod.postgres["args"]]
        assert args[0] == "postgres"
        postgres = subprocess.Popen(
            as_postgres([str(PG_BIN / "postgres"), "-D", env["PGDATA"], *args[1:],
                         "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}", "-c", "fsync=off"]),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(postgres)
        socket_dir = env["PGHOST"]
        wait_for(lambda: unix_open(Path(socket_dir, f".s.PGSQL.{port}")), "Postgres' socket", postgres)
        wait_for(lambda: unix_open(Path(socket_dir, ".s.PGSQL.5332")), "pgduck_server's socket", pgduck)

        # The readiness probe, as rendered (port aside).
        probe = pod.local(pod.postgres["readinessProbe"]["exec"]["command"][2]).replace("-p 5432", f"-p {port}")
        # Postgres accepts on its socket while still starting up, as kubelet's retries allow for.
        wait_for(lambda: subprocess.run(["sh", "-c", probe], env=env).returncode == 0, "readiness probe", postgres)

        # The extension Job: its psql command and environment, twice (it must be idempotent).
        job = pod.of_kind("Job")["spec"]["template"]["spec"]["containers"][0]
        job_env = pod.env(job)
        rw = next(o for o in pod.objects if o["kind"] == "Service" and o["metadata"]["name"].endswith("-rw"))
        assert job_env["PGHOST"] == rw["metadata"]["name"]
        job_env.update(PGHOST="127.0.0.1", PGPORT=str(port))
        for _ in range(2):
            done = subprocess.run(job["command"], env=job_env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr

        dsn = f"host=127.0.0.1 port={port} user={job_env['PGUSER']} password={PASSWORD} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = conn.execute("SELECT extversion::text FROM pg_extension WHERE extname = 'pg_lake'").fetchone()
            assert version == (pod.example["spec"]["version"],)
            host = conn.execute("SELECT current_setting('pg_lake_engine.host')").fetchone()[0]
            assert host == f"host={socket_dir} port=5332"
            prefix = conn.execute("SELECT current_setting('pg_lake_iceberg.default_location_prefix')").fetchone()[0]
            assert prefix == pod.example["spec"]["objectStorage"]["warehouse"]
            # A query pg_lake sends through pgduck_server, over the shared socket.
            csv = Path(socket_dir, "probe.csv")
            csv.write_text("a,b\n1,2\n")
            assert conn.execute("SELECT lake_file.exists(%s)", (str(csv),)).fetchone() == (True,)
            # A write through pgduck_server under the sidecar's --memory_limit (issue 11,
            # item 9: COPY TO failed under any limit below ~16 GiB, i.e. in every pod).
            parquet = Path(socket_dir, "written.parquet")
            conn.execute(f"COPY (SELECT 1 AS a) TO '{parquet}'")
            assert parquet.stat().st_size > 0
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn.replace(PASSWORD, "wrong"))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=20)
        shutil.rmtree(base, ignore_errors=True)
