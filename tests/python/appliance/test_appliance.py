"""The README's first command: `scripts/appliance.sh` runs `pg_lake_local`, which starts
Postgres with pg_lake, pgduck_server and the REST catalog from the shared wiring. This
runs that binary (the script only installs and builds first) on free ports, uses what it
prints the way a user would, checks it is wired as the operator wires a pod, restarts it
over the same data and stops it with SIGTERM."""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
import yaml
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

from appliance_support import TARGET, Appliance, free_ports
from lake_testing import REPO


@pytest.fixture(scope="module")
def appliance_dir(appliance_build):
    base = Path(tempfile.mkdtemp(prefix="pg-lake-appliance-"))
    base.chmod(0o755)  # Postgres runs as `postgres` and must reach its data directory
    yield base / "data"
    shutil.rmtree(base, ignore_errors=True)


def rendered_pod(example: str):
    out = subprocess.run([str(TARGET / "debug/lake_operator"), "render", str(REPO / "examples" / example)],
                         capture_output=True, text=True, check=True).stdout
    objects = [o for o in yaml.safe_load_all(out) if o]
    conf = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["postgresql.conf"]
    sts = next(o for o in objects if o["kind"] == "StatefulSet")
    sidecar = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] != "postgres")
    gucs = dict(re.match(r"(\S+) = '(.*)'$", line).groups()
                for line in conf.splitlines() if line and not line.startswith("#"))
    return gucs, sidecar["args"]


def flags(args):
    return dict(a.removeprefix("--").split("=", 1) for a in args)


def test_the_appliance_runs_wired_as_a_pod_and_keeps_its_data(appliance_dir):
    ports = free_ports()
    app = Appliance(appliance_dir, ports)
    try:
        assert f"http://127.0.0.1:{ports['catalog']}" == app.catalog_url
        with psycopg.connect(app.postgres_url, autocommit=True) as db:
            assert db.execute("SELECT extname FROM pg_extension WHERE extname = 'pg_lake'").fetchone()
            # pgduck_server answers through the extension: write a Parquet file and read it back.
            files = appliance_dir / "files"
            files.mkdir()
            if os.geteuid() == 0:  # the appliance's processes run as postgres
                shutil.chown(files, "postgres", "postgres")
            db.execute(f"COPY (SELECT i AS id FROM generate_series(1, 3) i) TO '{files}/ids.parquet'")
            assert [r[0] for r in db.execute(f"SELECT * FROM lake_file.preview('{files}/ids.parquet')")] == ["id"]

            # The catalog shares Postgres' database: a PyIceberg table shows up in iceberg_tables.
            catalog = RestCatalog("local", uri=app.catalog_url)
            catalog.create_namespace("demo")
            table = catalog.create_table("demo.people", schema=Schema(
                NestedField(1, "id", LongType(), required=False),
                NestedField(2, "name", StringType(), required=False)))
            table.append(pa.table({"id": pa.array([1, 2], pa.int64()), "name": ["ada", "bob"]}))
            assert db.execute("SELECT table_namespace, table_name, metadata_location FROM iceberg_tables"
                              ).fetchall() == [("demo", "people", table.metadata_location)]
            assert table.metadata_location.startswith(f"file://{appliance_dir}/warehouse/") or \
                table.metadata_location.startswith(f"{appliance_dir}/warehouse/")

            # Iceberg tables out of the box: Postgres creates and writes one in the local
            # warehouse, PyIceberg reads it through the catalog and appends, Postgres sees that.
            db.execute("CREATE TABLE measurements (id bigint, reading double precision) USING iceberg")
            db.execute("INSERT INTO measurements VALUES (1, 0.5), (2, 1.5)")
            shared = catalog.load_table("public.measurements")
            assert sorted(shared.scan().to_arrow().column("id").to_pylist()) == [1, 2]
            shared.append(pa.table({"id": pa.array([3], pa.int64()), "reading": pa.array([2.5])}))
            assert db.execute("SELECT count(*), sum(reading) FROM measurements").fetchone() == (3, 4.5)

            # One wiring: the GUCs the operator writes into the pod's postgresql.conf are the
            # ones the appliance runs with, and they point at its own pgduck_server.
            pod_gucs, pod_sidecar_args = rendered_pod("local-dev.yaml")
            live = {name: db.execute(f"SELECT current_setting('{name}')").fetchone()[0] for name in pod_gucs
                    if name != "listen_addresses"}
            assert live["shared_preload_libraries"] == pod_gucs["shared_preload_libraries"]
            socket_dir = live["unix_socket_directories"]
            assert live["port"] == str(ports["postgres"])
            assert live["pg_lake_engine.host"] == f"host={socket_dir} port={ports['pgduck']}"
            assert pod_gucs["pg_lake_engine.host"] == \
                f"host={pod_gucs['unix_socket_directories']} port={flags(pod_sidecar_args)['port']}"
            assert live["pg_lake_iceberg.default_location_prefix"].endswith("/warehouse")

        pgduck = app.children()["pgduck_server"]
        args = Path(f"/proc/{pgduck}/cmdline").read_text().split("\0")[1:-1]
        local_flags, pod_flags = flags(args), flags(pod_sidecar_args)
        assert local_flags["unix_socket_directory"] == socket_dir
        assert local_flags["port"] == str(ports["pgduck"])
        # The pod sets DuckDB's memory, threads and cache size from the LakeCluster spec;
        # every other flag is the same in both, from the same code.
        assert set(pod_flags) - set(local_flags) <= {"memory_limit", "threads", "cache_size"}
        assert set(local_flags) <= set(pod_flags)
        assert local_flags["max_clients"] == pod_flags["max_clients"]
    finally:
        app.stop()

    # A second start reuses the data: the same Postgres, the same catalog and table.
    app = Appliance(appliance_dir, ports)
    try:
        with psycopg.connect(app.postgres_url, autocommit=True) as db:
            assert db.execute("SELECT table_namespace, table_name FROM iceberg_tables").fetchall() == \
                [("demo", "people"), ("public", "measurements")]
            assert db.execute("SELECT count(*) FROM measurements").fetchone() == (3,)
        rows = RestCatalog("local", uri=app.catalog_url).load_table("demo.people").scan().to_arrow()
        assert sorted(rows.column("name").to_pylist()) == ["ada", "bob"]
    finally:
        app.stop()
