"""The REST catalog Deployment `render` prints runs for real: its command and
environment (credentials from the superuser Secret, `$(PGUSER)` in the database
URL, auth mode and tokens) start the real rest_catalog against a real Postgres
that requires the password, with the read-write Service's name pointed at it.
Its probes' paths answer without a token, and it is open only with `auth: none`."""

import subprocess
import time

import pytest
import requests
import yaml

from lake_testing import PostgresCluster, free_port
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
    pg = PostgresCluster(prefix="lake-operator-pg-", password=PASSWORD)
    try:
        yield pg.port
    finally:
        pg.stop()


@pytest.fixture(scope="module")
def rest_catalog_bin():
    cargo_build("rest_catalog")
    return TARGET / "debug/rest_catalog"


@pytest.mark.parametrize("example, catalog, token_secret", [
    # A token Secret the spec names.
    ("s3-keys.yaml", None, "lake-catalog-token"),
    # No Secret named: the operator generates one (auth defaults to token).
    ("local-dev.yaml", None, "dev-catalog-token"),
    # Open, because the spec says so.
    ("local-dev.yaml", {"auth": "none"}, None),
], ids=["named-token", "generated-token", "auth-none"])
def test_rendered_catalog_runs_against_postgres(operator_bin, rest_catalog_bin, postgres_port, tmp_path, example,
                                                catalog, token_secret):
    path = REPO / "examples" / example
    if catalog is not None:
        spec = yaml.safe_load(path.read_text())
        spec["spec"]["catalog"] = catalog
        path = tmp_path / example
        path.write_text(yaml.safe_dump(spec))
    result = run_operator(operator_bin, "render", str(path))
    assert result.returncode == 0, result.stderr
    objects = [d for d in yaml.safe_load_all(result.stdout) if d]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    secret = next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-superuser"))
    name = secret["metadata"]["name"]
    generated = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-catalog-token")]
    if example == "local-dev.yaml" and token_secret:
        # Rendered with a fresh random token, which the kubelet would resolve; here the
        # reference is resolved to TOKEN instead.
        assert [o["metadata"]["name"] for o in generated] == [token_secret]
        assert len(generated[0]["stringData"]["token"]) >= 43
        assert "ownerReferences" not in generated[0]["metadata"]
    else:
        assert generated == []
    secrets = {
        (name, "username"): secret["stringData"]["username"],
        (name, "password"): PASSWORD,
        ("lake-catalog-token", "token"): TOKEN,
        ("dev-catalog-token", "token"): TOKEN,
        ("lake-s3-keys", "accessKeyId"): "AKIAEXAMPLE",
        ("lake-s3-keys", "secretAccessKey"): "example-secret",
        ("minio-keys", "accessKeyId"): "minioadmin",
        ("minio-keys", "secretAccessKey"): "minioadmin",
    }
    env = env_as_kubernetes_sets_it(container, secrets)
    tokens_ref = next((e["valueFrom"]["secretKeyRef"] for e in container["env"] if e["name"] == "REST_CATALOG_TOKENS"),
                      None)
    if token_secret:
        assert env["REST_CATALOG_AUTH"] == "token"
        assert tokens_ref["name"] == token_secret
    else:
        assert env["REST_CATALOG_AUTH"] == "none" and tokens_ref is None
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
    base = f"http://127.0.0.1:{port}"
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"} if token_secret else {}
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                response = requests.get(f"{base}/v1/config", headers=headers, timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "rest_catalog did not start"
                time.sleep(0.2)
        assert response.status_code == 200, response.text
        without = requests.get(f"{base}/v1/config", timeout=2)
        assert without.status_code == (401 if token_secret else 200), without.text
        if token_secret:
            wrong = requests.get(f"{base}/v1/config", headers={"Authorization": "Bearer wrong"}, timeout=2)
            assert wrong.status_code == 401
        # What the kubelet's probes ask, on the container port they name, without a token.
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert ports[get["port"]] == 8181
            answer = requests.get(f"{base}{get['path']}", timeout=5)
            assert answer.status_code == 200, f"{probe} {get['path']}: {answer.status_code} {answer.text}"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
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
    secret = next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-superuser"))
    name = secret["metadata"]["name"]
    env = env_as_kubernetes_sets_it(container, {
        (f"{spec['metadata']['name']}-catalog-token", "token"): TOKEN,
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
