"""Fixtures of the appliance suite: the binaries built once, a fresh data directory per test."""

import shutil
import tempfile
from pathlib import Path

import pytest

from appliance_support import build


@pytest.fixture(scope="session")
def appliance_build():
    build("pg_lake_common", "pgduck_server", "rest_catalog", "lake_operator")


@pytest.fixture
def data_dir(appliance_build):
    """A data directory that does not exist yet, below a directory every user may traverse."""
    base = Path(tempfile.mkdtemp(prefix="pg-lake-appliance-"))
    base.chmod(0o755)
    yield base / "data"
    shutil.rmtree(base, ignore_errors=True)
