"""What can be checked of the Helm chart without helm: its CRD is the generated
one, its values satisfy its schema, and its RBAC grants exactly the verbs the
operator uses (`lake_operator rbac`, from the table the controller's tests check)."""

import json
import re

import jsonschema
import kubernetes_validate
import yaml

from lake_operator_support import CHART, CRD_PATH, EXAMPLES, OLDEST_KUBERNETES, REPO, operator_bin, run_operator  # noqa: F401 (fixtures)


def test_chart_crd_equals_the_generated_crd():
    assert (CHART / "crds/lakeclusters.pglake.dev.yaml").read_text() == CRD_PATH.read_text()


def test_values_validate_against_the_schema():
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(values, schema)
    for bad in ({**values, "replicas": 0}, {**values, "watchNamespaces": ["Not_A_Namespace"]}, {**values, "typo": 1},
                {**values, "fullApplySeconds": 5}):
        assert list(jsonschema.Draft7Validator(schema).iter_errors(bad)), bad


def workspace_version():
    cargo = (REPO / "Cargo.toml").read_text()
    section = cargo.split("[workspace.package]", 1)[1]
    return re.search(r'^version = "([^"]+)"', section, re.M).group(1)


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "lake-operator"


def test_release_versions_agree():
    """The operator's release is pinned in Cargo.toml; the chart's appVersion (its
    image tag) and the examples' spec.version (the images and extension they
    install) say the same release."""
    version = workspace_version()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version, f"Chart.yaml appVersion {chart['appVersion']} is not the crate's {version}"
    for example in EXAMPLES:
        spec = yaml.safe_load(example.read_text())["spec"]
        assert spec["version"] == version, f"{example.name} installs {spec['version']}, the release is {version}"


def template_docs(name):
    """A template's documents with the Go-template directives stripped: the RBAC
    rules themselves are plain YAML."""
    text = (CHART / "templates" / name).read_text()
    lines = [l for l in text.splitlines() if not re.fullmatch(r"\s*\{\{-?[^}]*-?\}\}\s*", l)]
    text = re.sub(r"\{\{[^}]*\}\}", "x", "\n".join(lines))
    return [d for d in yaml.safe_load_all(text) if d]


def grants(rules):
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_rbac_grants_exactly_what_the_operator_uses(operator_bin):
    result = run_operator(operator_bin, "rbac")
    assert result.returncode == 0, result.stderr
    needed = {d["kind"]: grants(d["rules"]) for d in yaml.safe_load_all(result.stdout) if d}
    chart = {d["kind"]: grants(d["rules"]) for d in template_docs("rbac.yaml") if "rules" in d}
    assert set(chart) == {"ClusterRole", "Role"}
    for kind in ("ClusterRole", "Role"):
        missing = needed[kind] - chart[kind]
        extra = chart[kind] - needed[kind]
        assert not missing, f"chart {kind} lacks {sorted(missing)}"
        assert not extra, f"chart {kind} grants more than the operator uses: {sorted(extra)}"
    assert all(r == "leases" for _, r, _ in chart["Role"]), "only leader election is namespace-local"


def test_deployment_runs_the_controller_with_health_probes():
    text = (CHART / "templates/deployment.yaml").read_text()
    assert "args: [run]" in text
    assert "path: /healthz" in text
    assert "fieldPath: metadata.name" in text, "the Lease identity is the pod name"
    assert "WATCH_NAMESPACES" in text
    assert "FULL_APPLY_SECONDS" in text


def test_template_blocks_are_balanced():
    """Without helm, at least every opened block is closed in each template."""
    opener = re.compile(r"\{\{-?\s*(if|range|with|define)\b")
    closer = re.compile(r"\{\{-?\s*end\s*-?\}\}")
    for template in (CHART / "templates").iterdir():
        text = template.read_text()
        assert text.count("{{") == text.count("}}"), template.name
        assert len(opener.findall(text)) == len(closer.findall(text)), template.name


def test_rbac_objects_are_valid_kubernetes():
    for doc in template_docs("rbac.yaml"):
        doc["metadata"]["name"] = "lake-operator"
        kubernetes_validate.validate(doc, OLDEST_KUBERNETES, strict=True)
