"""Crash safety of REST commits: kill -9 of rest_catalog while a commit is paused after
its metadata file was written (the catalog row not yet swapped) and after the swap (the
client not yet answered). After a restart the table loads, the commit is either entirely
there or entirely absent (there exactly when the catalog row was swapped: an
acknowledged commit is never lost), other readers agree, and the table takes commits
again."""

import shutil
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from lake_testing import CatalogServer, rest_catalog_binary
from rest_catalog_support import SCHEMA, batch, duckdb_rows, rows


def wait_for_log(server, text, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in Path(server.log.name).read_text(errors="replace"):
            return
        time.sleep(0.05)
    pytest.fail(f"rest_catalog never logged {text!r}; see {server.log.name}")


@pytest.mark.parametrize("step", ["metadata", "swapped"])
def test_rest_catalog_killed_mid_commit_leaves_the_commit_all_or_nothing(postgres_url, step):
    from pyiceberg.catalog.rest import RestCatalog

    workdir = Path(tempfile.mkdtemp(prefix=f"rest-catalog-crash-{step}-"))
    warehouse = str(workdir / "warehouse")
    binary = rest_catalog_binary()
    namespace = f"crash_{step}"
    try:
        setup = CatalogServer(binary, postgres_url, workdir, warehouse)
        try:
            catalog = RestCatalog("lake", uri=setup.url)
            catalog.create_namespace(namespace)
            catalog.create_table(f"{namespace}.t", schema=SCHEMA).append(batch(0, 3))
        finally:
            setup.stop()

        paused = CatalogServer(binary, postgres_url, workdir, warehouse,
                               env={"REST_CATALOG_DEBUG_PAUSE_AT": step})
        table = RestCatalog("lake", uri=paused.url).load_table(f"{namespace}.t")
        before = table.metadata_location
        outcome = {}

        def append():
            try:
                table.append(batch(3, 2))
                outcome["acknowledged"] = True
            except Exception as e:  # the connection is cut by the kill
                outcome["error"] = e

        writer = threading.Thread(target=append, daemon=True)
        writer.start()
        wait_for_log(paused, "commit paused")
        paused.proc.kill()
        paused.proc.wait(10)
        paused.log.close()
        writer.join(30)
        assert not writer.is_alive()
        assert "acknowledged" not in outcome, "the client got no answer from a killed server"

        restarted = CatalogServer(binary, postgres_url, workdir, warehouse)
        try:
            catalog = RestCatalog("lake", uri=restarted.url)
            reloaded = catalog.load_table(f"{namespace}.t")
            swapped = step == "swapped"
            expected = rows(pa.concat_tables([batch(0, 3), batch(3, 2)]) if swapped else batch(0, 3))
            assert rows(reloaded.scan().to_arrow()) == expected
            assert duckdb_rows(restarted.url, namespace, "t") == expected
            assert (reloaded.metadata_location == before) != swapped
            assert len(reloaded.history()) == (2 if swapped else 1)
            # The table takes commits again, on top of whatever the crash left.
            reloaded.append(batch(10, 1))
            assert rows(catalog.load_table(f"{namespace}.t").scan().to_arrow()) == sorted(
                expected + rows(batch(10, 1)))
        finally:
            restarted.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
