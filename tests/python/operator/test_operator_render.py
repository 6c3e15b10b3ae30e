"""Every object `lake_operator render` prints for the examples is valid
Kubernetes (strict OpenAPI schemas, 1.30 and the client's 1.33), and carries
the pod wiring the design asks for."""

import kubernetes_validate
import pytest
import yaml

from lake_operator_support import EXAMPLES, operator_bin, run_operator  # noqa: F401 (fixtures)

VERSIONS = ["1.30.0", "1.33.0"]
SECRET_ENV_HINTS = ("PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY_ID")


def render(operator_bin, example):
    result = run_operator(operator_bin, "render", str(example))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pod_specs(objects):
    for obj in objects:
        template = obj.get("spec", {}).get("template")
        if template:
            yield obj, template["spec"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("version", VERSIONS)
def test_rendered_objects_validate_strictly(operator_bin, example, version):
    objects = render(operator_bin, example)
    kinds = [o["kind"] for o in objects]
    for kind in ["ServiceAccount", "ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget", "NetworkPolicy", "Job"]:
        assert kind in kinds, f"{example.name}: no {kind} in {kinds}"
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{example.name}: {obj['kind']}/{obj['metadata']['name']} is invalid for {version}: {e}")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_credentials_never_inline(operator_bin, example):
    objects = render(operator_bin, example)
    for obj, spec in pod_specs(objects):
        for container in spec["containers"]:
            for env in container.get("env", []):
                if any(h in env["name"] for h in SECRET_ENV_HINTS):
                    assert "value" not in env, f"{obj['kind']} {container['name']}: {env['name']} is inline"
                    assert env["valueFrom"]["secretKeyRef"]["name"], env
    for obj in objects:
        assert "data" not in obj or obj["kind"] != "Secret", "generated Secrets use stringData only"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_pgduck_socket_stays_inside_the_pod(operator_bin, example):
    objects = render(operator_bin, example)
    sts = next(o for o in objects if o["kind"] == "StatefulSet")
    spec = sts["spec"]["template"]["spec"]
    postgres, pgduck = spec["containers"]
    assert (postgres["name"], pgduck["name"]) == ("postgres", "pgduck")
    assert pgduck["command"] == ["pgduck_server"]
    socket_flag = next(a for a in pgduck["args"] if a.startswith("--unix_socket_directory="))
    socket_dir = socket_flag.split("=", 1)[1]
    volume_of = {m["mountPath"]: m["name"] for m in pgduck["volumeMounts"]}
    sockets = next(v for v in spec["volumes"] if v["name"] == volume_of[socket_dir])
    assert "emptyDir" in sockets, "the socket lives on a pod-local emptyDir"
    assert {m["mountPath"]: m["name"] for m in postgres["volumeMounts"]}[socket_dir] == sockets["name"]
    assert "ports" not in pgduck, "pgduck_server exposes no port"
    for svc in (o for o in objects if o["kind"] == "Service"):
        assert all(p["port"] != 5332 for p in svc["spec"]["ports"])
    for container in spec["containers"]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"]["drop"] == ["ALL"]
    assert spec["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_postgres_conf_points_at_pgduck(operator_bin, example):
    objects = render(operator_bin, example)
    conf = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["postgresql.conf"]
    sts = next(o for o in objects if o["kind"] == "StatefulSet")
    pgduck = sts["spec"]["template"]["spec"]["containers"][1]
    flags = dict(a.removeprefix("--").split("=", 1) for a in pgduck["args"])
    assert "shared_preload_libraries = 'pg_lake'" in conf
    assert f"unix_socket_directories = '{flags['unix_socket_directory']}'" in conf
    assert f"pg_lake_engine.host = 'host={flags['unix_socket_directory']} port={flags['port']}'" in conf
    lc = yaml.safe_load(example.read_text())
    warehouse = lc["spec"]["objectStorage"]["warehouse"]
    assert f"pg_lake_iceberg.default_location_prefix = '{warehouse}'" in conf
    for name, value in lc["spec"].get("postgres", {}).get("parameters", {}).items():
        assert f"{name} = '{value}'" in conf


def test_irsa_and_workload_identity_annotate_the_service_account(operator_bin):
    by_name = {p.name: p for p in EXAMPLES}
    sa = next(o for o in render(operator_bin, by_name["s3-irsa.yaml"]) if o["kind"] == "ServiceAccount")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == "arn:aws:iam::123456789012:role/pg-lake-events"
    gcs = render(operator_bin, by_name["gcs.yaml"])
    sts = next(o for o in gcs if o["kind"] == "StatefulSet")
    key_volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if "secret" in v)
    assert key_volume["secret"]["secretName"] == "lake-gcs-key"
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][1]["env"]}
    assert env["GOOGLE_APPLICATION_CREDENTIALS"]["value"].endswith("/key.json")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_catalog_is_open_only_when_the_example_says_so(operator_bin, example):
    """No example leaves the catalog open by omission: without `catalog.auth: none`
    it reads tokens from a Secret (the named one, or the generated one that
    `render` prints), and its probes ask /readyz and /healthz over HTTP."""
    spec = yaml.safe_load(example.read_text())["spec"]
    objects = render(operator_bin, example)
    deployment = next((o for o in objects if o["kind"] == "Deployment"), None)
    if deployment is None:
        assert spec.get("catalog", {}).get("enabled") is False
        return
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    if spec.get("catalog", {}).get("auth") == "none":
        assert env["REST_CATALOG_AUTH"]["value"] == "none" and "REST_CATALOG_TOKENS" not in env
    else:
        assert env["REST_CATALOG_AUTH"]["value"] == "token"
        ref = env["REST_CATALOG_TOKENS"]["valueFrom"]["secretKeyRef"]
        named = spec.get("catalog", {}).get("authTokenSecret")
        if named:
            assert ref == {"name": named["name"], "key": named["key"], "optional": False}
        else:
            generated = next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == ref["name"])
            assert ref["key"] in generated["stringData"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
