"""Property-based requests from the catalog's own OpenAPI document
(rest_catalog/openapi.yaml, the one GET /openapi.yaml serves) against the
real server on real Postgres: whatever a client sends, the answer is never a
5xx. Bounded by SCHEMATHESIS_MAX_EXAMPLES per operation (default 40) so the
run stays well under three minutes."""

import os
from pathlib import Path

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings

OPENAPI = Path(__file__).resolve().parents[3] / "rest_catalog" / "openapi.yaml"
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "40"))


def without_prefix(document: dict) -> dict:
    """The document as a server started without --prefix serves it: paths
    `/v1/{prefix}/...` are `/v1/...` (otherwise every generated prefix is a 404)."""
    paths = {}
    for path, item in document["paths"].items():
        item = dict(item)
        if "{prefix}" in path:
            path = path.replace("/{prefix}", "")
            item["parameters"] = [p for p in item.get("parameters", []) if p != {"$ref": "#/components/parameters/prefix"}]
        paths[path] = item
    return {**document, "paths": paths}


schema = schemathesis.openapi.from_dict(without_prefix(yaml.safe_load(OPENAPI.read_text())))


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_request_is_answered_with_a_server_error(case, catalog_server):
    response = case.call(base_url=catalog_server.url, timeout=30)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code} {response.text[:500]}\n"
        f"{case.as_curl_command()}"
    )
    if case.method != "HEAD" and response.status_code >= 400 and case.path.startswith("/v1/") and case.path != "/v1/oauth/tokens":
        assert response.json()["error"]["code"] == response.status_code, response.text
