"""Fixtures for the operator's offline tests: the built `lake_operator` binary
and the repository's examples, CRD and chart."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/pg_lake/target"))
OPERATOR_BIN = TARGET / "debug/lake_operator"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
INVALID = sorted((REPO / "examples/invalid").glob("*.yaml"))
CRD_PATH = REPO / "crds/lakeclusters.pglake.dev.yaml"
CHART = REPO / "charts/lake-operator"


@pytest.fixture(scope="session")
def operator_bin() -> Path:
    """The debug binary, brought up to date (a no-op when it already is)."""
    subprocess.run(["bash", "-c", "source scripts/env.sh && cargo build -p lake_operator"], cwd=REPO, check=True)
    return OPERATOR_BIN


def run_operator(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="session")
def crd() -> dict:
    return yaml.safe_load(CRD_PATH.read_text())


def expected_error(path: Path) -> str:
    """The `# expect: ...` line an invalid example starts with."""
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message>'"
    return first.removeprefix("# expect: ")
