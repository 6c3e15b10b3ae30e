"""Paths, helpers and fixtures of the operator's tests. Not a conftest.py: other
suites import names from `conftest`, and a second conftest module would shadow theirs.
Test modules import the fixtures they use from here."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/pg_lake/target"))
OPERATOR_BIN = TARGET / "debug/lake_operator"
PGDUCK_BIN = Path(os.environ.get("PGDUCK_SERVER_BIN", TARGET / "debug/pgduck_server"))
DUCKDB_EXTENSIONS = Path(
    os.environ.get("PG_LAKE_DUCKDB_EXTENSIONS", Path.home() / ".cache/pg_lake/duckdb/extensions")
)
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
INVALID = sorted((REPO / "examples/invalid").glob("*.yaml"))
CRD_PATH = REPO / "crds/lakeclusters.pglake.dev.yaml"
CHART = REPO / "charts/lake-operator"
# Kubernetes versions whose schemas every generated object is validated against:
# the oldest supported, and the one the operator's k8s-openapi types follow (its
# `v1_xx` feature in operator/Cargo.toml; test_operator_render checks they agree).
KUBERNETES_VERSIONS = ["1.30.0", "1.33.0"]
OLDEST_KUBERNETES, NEWEST_KUBERNETES = KUBERNETES_VERSIONS[0], KUBERNETES_VERSIONS[-1]


def cargo_build(package: str):
    """Brings a workspace binary up to date (a no-op when it already is)."""
    subprocess.run(["bash", "-c", f"source scripts/env.sh && cargo build -p {package}"], cwd=REPO, check=True)


def run_operator(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)


def expected_error(path: Path) -> str:
    """The `# expect: ...` line an invalid example starts with."""
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message>'"
    return first.removeprefix("# expect: ")


@pytest.fixture(scope="session")
def operator_bin() -> Path:
    cargo_build("lake_operator")
    return OPERATOR_BIN


@pytest.fixture(scope="session")
def pgduck_bin() -> Path:
    cargo_build("pgduck_server")
    return PGDUCK_BIN


@pytest.fixture(scope="session")
def crd() -> dict:
    return yaml.safe_load(CRD_PATH.read_text())


def env_as_kubernetes_sets_it(container: dict, secrets: dict) -> dict:
    """A container's environment as the kubelet builds it: Secret references
    resolved from `secrets` ({(name, key): value}), `$(VAR)` expanded from the
    entries before it."""
    env = {}
    for entry in container.get("env", []):
        if "valueFrom" in entry:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets[(ref["name"], ref["key"])]
        else:
            value = entry["value"]
            for name, earlier in env.items():
                value = value.replace(f"$({name})", earlier)
            env[entry["name"]] = value
    return env
