"""Every object `lake_operator render` prints for the examples (and what `crd` and
`rbac` print) is valid Kubernetes (strict OpenAPI schemas, 1.30 and 1.33, the API
the operator's k8s-openapi types follow), and carries the pod wiring the design
asks for."""

import copy
import re

import kubernetes_validate
import pytest
import yaml

from lake_operator_support import EXAMPLES, KUBERNETES_VERSIONS as VERSIONS, REPO, operator_bin, run_operator  # noqa: F401 (fixtures)

SECRET_ENV_HINTS = ("PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY_ID")
# Every kind the operator creates for a LakeCluster (`resources::all_objects`).
KINDS = {"ServiceAccount", "Secret", "ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget",
         "NetworkPolicy", "Deployment", "Job"}


def render(operator_bin, example):
    result = run_operator(operator_bin, "render", str(example))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def variant(base, change):
    lc = copy.deepcopy(yaml.safe_load(base.read_text()))
    change(lc["spec"])
    return lc


def _storage(storage):
    def change(spec):
        spec["objectStorage"] = storage
    return change


# Specs the examples do not show, for what they render differently: each
# credential source (a mounted key, HMAC keys, workload identity), a session
# token, the catalog open or disabled, a named superuser Secret.
VARIANTS = {
    "gcs-hmac": _storage({"warehouse": "gs://b/w", "credentials": {"s3KeysSecret": {"name": "hmac"}}}),
    "gcs-workload-identity": _storage(
        {"warehouse": "gs://b/w", "credentials": {"podIdentity": {"gcpServiceAccount": "lake@p.iam.gserviceaccount.com"}}}),
    "s3-session-token": _storage(
        {"warehouse": "s3://b/w", "credentials": {"s3KeysSecret": {"name": "k", "sessionTokenKey": "token"}}}),
    "catalog-open": lambda spec: spec.update(catalog={"auth": "none"}),
    "catalog-disabled": lambda spec: spec.update(catalog={"enabled": False}),
    "named-superuser": lambda spec: spec.setdefault("postgres", {}).update(superuserSecret={"name": "admin"}),
}


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    base = REPO / "examples/gcs.yaml"
    out = {}
    for name, change in VARIANTS.items():
        path = tmp_path_factory.mktemp("variants") / f"{name}.yaml"
        path.write_text(yaml.safe_dump(variant(base, change)))
        out[name] = path
    return out


def pod_specs(objects):
    for obj in objects:
        template = obj.get("spec", {}).get("template")
        if template:
            yield obj, template["spec"]


def validate_strictly(objects, what, version):
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{what}: {obj['kind']}/{obj['metadata']['name']} is invalid for {version}: {e}")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("version", VERSIONS)
def test_rendered_objects_validate_strictly(operator_bin, example, version):
    objects = render(operator_bin, example)
    kinds = {o["kind"] for o in objects}
    # Every example runs the catalog (Deployment) and generates a Secret.
    assert kinds == KINDS, f"{example.name}: renders {sorted(kinds)}, not {sorted(KINDS)}"
    validate_strictly(objects, example.name, version)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("version", VERSIONS)
def test_rendered_variants_validate_strictly(operator_bin, variants, name, version):
    objects = render(operator_bin, variants[name])
    validate_strictly(objects, name, version)
    kinds = {o["kind"] for o in objects}
    assert ("Deployment" in kinds) == (name != "catalog-disabled"), name


@pytest.mark.parametrize("version", VERSIONS)
def test_crd_and_rbac_output_validate_strictly(operator_bin, version):
    for command, kinds in (("crd", ["CustomResourceDefinition"]), ("rbac", ["ClusterRole", "Role"])):
        result = run_operator(operator_bin, command)
        assert result.returncode == 0, result.stderr
        objects = [d for d in yaml.safe_load_all(result.stdout) if d]
        assert [o["kind"] for o in objects] == kinds, command
        validate_strictly(objects, command, version)


def test_the_kubernetes_versions_agree_with_the_operators_types():
    """k8s-openapi's `v1_xx` feature picks the API the operator's types follow:
    it is the newest version the manifests are validated against."""
    cargo = (REPO / "operator/Cargo.toml").read_text()
    features = re.findall(r'"v1_(\d+)"', next(l for l in cargo.splitlines() if l.startswith("k8s-openapi")))
    assert len(features) == 1, features
    assert VERSIONS == sorted(VERSIONS, key=lambda v: tuple(map(int, v.split(".")))), VERSIONS
    newest = VERSIONS[-1]
    assert newest == f"1.{features[0]}.0", f"k8s-openapi is built for 1.{features[0]}, the tests validate up to {newest}"
    readme = (REPO / "operator/README.md").read_text()
    for v in VERSIONS:
        assert v.removesuffix(".0") in readme, f"operator/README.md does not name Kubernetes {v}"


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


def secret_values(objects):
    """What the generated Secrets hold, but the superuser's name (`postgres`)."""
    return {v for o in objects if o["kind"] == "Secret" for k, v in o.get("stringData", {}).items() if k != "username"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_secret_values_stay_in_secrets(operator_bin, example):
    """The generated password and token are in their Secrets and nowhere else:
    not in postgresql.conf (pg_lake_engine.host reaches pgduck_server on its unix
    socket, without a password), an argument, an env value or an annotation."""
    objects = render(operator_bin, example)
    values = secret_values(objects)
    assert values, "the examples generate a superuser password (and most a catalog token)"
    for obj in objects:
        if obj["kind"] == "Secret":
            continue
        text = yaml.safe_dump(obj)
        for value in values:
            assert value not in text, f"{obj['kind']}/{obj['metadata']['name']} holds a Secret's value"
    conf = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["postgresql.conf"]
    host = re.search(r"^pg_lake_engine\.host = '(.*)'$", conf, re.M).group(1)
    assert "password" not in host and "password" not in conf.lower(), conf
    for obj, spec in pod_specs(objects):
        for container in spec["containers"]:
            argv = container.get("command", []) + container.get("args", [])
            assert not any("password" in a.lower() for a in argv), f"{obj['kind']} {container['name']}: {argv}"
            assert "--listen_address" not in " ".join(argv), "pgduck_server listens on its socket only"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_pgduck_server_gets_a_memory_limit_below_its_containers(operator_bin, example):
    """Every pod passes --memory_limit (4Gi by default), 80 % of the sidecar's
    limit, which equals its request."""
    sts = next(o for o in render(operator_bin, example) if o["kind"] == "StatefulSet")
    pgduck = sts["spec"]["template"]["spec"]["containers"][1]
    flags = dict(a.removeprefix("--").split("=", 1) for a in pgduck["args"])
    spec = yaml.safe_load(example.read_text())["spec"]
    limit = spec.get("pgduck", {}).get("memoryLimit", "4Gi")
    resources = pgduck["resources"]
    assert resources["limits"]["memory"] == resources["requests"]["memory"] == limit
    units = {"Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    container_bytes = int(limit[:-2]) * units[limit[-2:]]
    duckdb = flags["memory_limit"]
    assert duckdb.endswith("MiB"), duckdb
    assert int(duckdb.removesuffix("MiB")) == container_bytes // 5 * 4 >> 20


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
