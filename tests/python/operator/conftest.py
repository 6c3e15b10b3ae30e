"""Fixtures for the operator's offline tests."""

from pathlib import Path

import pytest
import yaml

from lake_operator_support import CRD_PATH, OPERATOR_BIN, PGDUCK_BIN, cargo_build


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
