"""The CRD's schema accepts the examples and rejects the invalid ones: the
OpenAPI part with jsonschema, the CEL rules evaluated for real by kube-cel
inside `lake_operator render` (the same rules the API server runs)."""

import jsonschema
import kubernetes_validate
import pytest
import yaml

from lake_operator_support import CRD_PATH, EXAMPLES, INVALID, OLDEST_KUBERNETES, crd, expected_error, operator_bin, run_operator  # noqa: F401 (fixtures)


def schema_errors(crd, obj):
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    validator = jsonschema.Draft4Validator(schema)
    return [
        ".".join(str(p) for p in e.absolute_path) + ": " + e.message
        for e in validator.iter_errors(obj)
    ]


def test_crd_is_a_valid_custom_resource_definition(crd):
    kubernetes_validate.validate(crd, OLDEST_KUBERNETES, strict=True)
    version = crd["spec"]["versions"][0]
    assert (crd["spec"]["group"], version["name"], crd["spec"]["names"]["kind"]) == ("pglake.dev", "v1alpha1", "LakeCluster")
    assert crd["spec"]["scope"] == "Namespaced" and crd["spec"]["names"]["shortNames"] == ["lc"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Phase", "Ready", "Endpoint", "Age"]


def test_crd_is_what_the_binary_generates(operator_bin):
    result = run_operator(operator_bin, "crd")
    assert result.returncode == 0, result.stderr
    assert result.stdout == CRD_PATH.read_text()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_valid_examples_pass_schema_and_cel(crd, operator_bin, example):
    obj = yaml.safe_load(example.read_text())
    assert schema_errors(crd, obj) == []
    result = run_operator(operator_bin, "render", str(example))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("example", INVALID, ids=lambda p: p.name)
def test_invalid_examples_are_rejected_with_a_clear_message(crd, operator_bin, example):
    want = expected_error(example)
    obj = yaml.safe_load(example.read_text())
    errors = schema_errors(crd, obj)
    result = run_operator(operator_bin, "render", str(example))
    if result.returncode != 0:
        errors.append(result.stderr)
    assert errors, f"{example.name} was accepted"
    assert any(want in e for e in errors), f"{example.name}: no error mentions {want!r}: {errors}"


def test_every_cel_rule_is_exercised_by_an_invalid_example(crd):
    """Each creation rule's message is what some invalid example expects
    (transition rules, which compare with `oldSelf`, are tested in Rust)."""
    messages = []

    def walk(node):
        if isinstance(node, dict):
            rules = node.get("x-kubernetes-validations", [])
            messages.extend(r["message"] for r in rules if "oldSelf" not in r["rule"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    wanted = [expected_error(p) for p in INVALID]
    for message in messages:
        assert any(w in message for w in wanted), f"no invalid example exercises {message!r}"
