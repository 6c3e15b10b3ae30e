"""The REST catalog Deployment `render` prints runs for real: its command and
environment (credentials from the superuser Secret, `$(PGUSER)` in the database
URL, auth mode and tokens) start the real rest_catalog against a real Postgres
that requires the password, with the read-write Service's name pointed at it."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml

from lake_testing import PG_BIN, as_postgres, free_port
from lake_operator_support import (  # noqa: F401 (fixtures)
    REPO,
    TARGET,
    cargo_build,
    env_as_kubernetes_sets_it,
    operator_bin,
    run_operator,
)

PASSWORD = "s3cret-Passw0rd"
TOKEN = "catalog-t0ken"


@pytest.fixture(scope="module")
def postgres_port():
    """A Postgres that accepts TCP clients only with the superuser's password."""
    base = Path(tempfile.mkdtemp(prefix="lake-operator-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    pwfile = base / "pw"
    pwfile.write_text(PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres", "postgres")
    data = base / "data"
    subprocess.run(
        as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
                     "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync"]),
        check=True, capture_output=True,
    )
    port = free_port()
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o", options, "start"]),
        check=True, capture_output=True,
    )
    try:
        yield port
    finally:
        subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def rest_catalog_bin():
    cargo_build("rest_catalog")
    return TARGET / "debug/rest_catalog"


@pytest.mark.parametrize("example, token", [("s3-keys.yaml", TOKEN), ("local-dev.yaml", None)])
def test_rendered_catalog_runs_against_postgres(operator_bin, rest_catalog_bin, postgres_port, tmp_path, example, token):
    result = run_operator(operator_bin, "render", str(REPO / "examples" / example))
    assert result.returncode == 0, result.stderr
    objects = [d for d in yaml.safe_load_all(result.stdout) if d]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    secret = next(o for o in objects if o["kind"] == "Secret")
    name = secret["metadata"]["name"]
    secrets = {
        (name, "username"): secret["stringData"]["username"],
        (name, "password"): PASSWORD,
        ("lake-catalog-token", "token"): TOKEN,
        ("lake-s3-keys", "accessKeyId"): "AKIAEXAMPLE",
        ("lake-s3-keys", "secretAccessKey"): "example-secret",
        ("minio-keys", "accessKeyId"): "minioadmin",
        ("minio-keys", "secretAccessKey"): "minioadmin",
    }
    env = env_as_kubernetes_sets_it(container, secrets)
    rw_service = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"].endswith("-rw"))
    service_host = f"@{rw_service['metadata']['name']}:5432/"
    assert service_host in env["REST_CATALOG_DATABASE_URL"]
    # The only changes: the Service's DNS name becomes this machine's Postgres,
    # and the catalog listens on loopback.
    env["REST_CATALOG_DATABASE_URL"] = env["REST_CATALOG_DATABASE_URL"].replace(service_host, f"@127.0.0.1:{postgres_port}/")
    port = free_port()
    env["REST_CATALOG_LISTEN"] = f"127.0.0.1:{port}"
    env.update(PATH="/usr/bin:/bin", HOME=str(tmp_path))
    assert PASSWORD not in " ".join(container.get("command", []) + container.get("args", []))

    proc = subprocess.Popen([str(rest_catalog_bin), *container.get("args", [])], executable=str(rest_catalog_bin),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                response = requests.get(f"http://127.0.0.1:{port}/v1/config", headers=headers, timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "rest_catalog did not start"
                time.sleep(0.2)
        assert response.status_code == 200, response.text
        if token:
            assert requests.get(f"http://127.0.0.1:{port}/v1/config", timeout=2).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_rendered_catalog_reaches_a_gcs_warehouse_with_hmac_keys(operator_bin, rest_catalog_bin, postgres_port,
                                                                 tmp_path, moto):
    """GCS HMAC keys from `s3KeysSecret` reach the catalog under the names it reads, and it
    writes and purges table metadata with them (moto stands in for GCS's XML API)."""
    spec = yaml.safe_load((REPO / "examples/gcs.yaml").read_text())
    spec["spec"]["objectStorage"] = {"warehouse": f"gs://{moto['bucket']}/operator-gcs",
                                     "credentials": {"s3KeysSecret": {"name": "gcs-hmac"}}}
    example = tmp_path / "gcs-hmac.yaml"
    example.write_text(yaml.safe_dump(spec))
    result = run_operator(operator_bin, "render", str(example))
    assert result.returncode == 0, result.stderr
    objects = [d for d in yaml.safe_load_all(result.stdout) if d]
    container = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    secret = next(o for o in objects if o["kind"] == "Secret")
    name = secret["metadata"]["name"]
    env = env_as_kubernetes_sets_it(container, {
        (name, "username"): secret["stringData"]["username"],
        (name, "password"): PASSWORD,
        ("gcs-hmac", "accessKeyId"): moto["key"],
        ("gcs-hmac", "secretAccessKey"): moto["secret"],
    })
    assert env["GCS_ACCESS_KEY_ID"] == moto["key"] and "AWS_ACCESS_KEY_ID" not in env
    rw = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"].endswith("-rw"))
    env["REST_CATALOG_DATABASE_URL"] = env["REST_CATALOG_DATABASE_URL"].replace(
        f"@{rw['metadata']['name']}:5432/", f"@127.0.0.1:{postgres_port}/")
    port = free_port()
    env.update(REST_CATALOG_LISTEN=f"127.0.0.1:{port}", REST_CATALOG_AUTH="none", REST_CATALOG_NAME="operator_gcs",
               STORAGE_EMULATOR_HOST=moto["endpoint"], PATH="/usr/bin:/bin", HOME=str(tmp_path))
    env.pop("REST_CATALOG_TOKENS", None)
    proc = subprocess.Popen([str(rest_catalog_bin), *container.get("args", [])], executable=str(rest_catalog_bin),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                requests.get(f"{base}/config", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "rest_catalog did not start"
                time.sleep(0.2)
        assert requests.post(f"{base}/namespaces", json={"namespace": ["ops"]}, timeout=10).status_code == 200
        created = requests.post(f"{base}/namespaces/ops/tables", timeout=10, json={
            "name": "t", "schema": {"type": "struct", "schema-id": 0,
                                    "fields": [{"id": 1, "name": "id", "type": "long", "required": False}]}})
        assert created.status_code == 200, created.text
        location = created.json()["metadata-location"]
        assert location.startswith(f"gs://{moto['bucket']}/operator-gcs/ops/t/metadata/")
        key = location.removeprefix(f"gs://{moto['bucket']}/")
        assert moto["s3"].head_object(Bucket=moto["bucket"], Key=key)["ContentLength"] > 0
        assert requests.delete(f"{base}/namespaces/ops/tables/t?purgeRequested=true", timeout=10).status_code == 204
        assert moto["s3"].list_objects_v2(Bucket=moto["bucket"], Prefix="operator-gcs/").get("KeyCount", 0) == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
