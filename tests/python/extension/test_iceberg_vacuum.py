"""VACUUM of Iceberg tables: small files compacted (deletes folded in), old snapshots
expired, and files nothing references any more deleted from storage once the
retention has passed; every engine still reads the table (real Postgres, pgduck_server,
DuckDB, a local warehouse whose files the tests count)."""

from pathlib import Path

import psycopg
import pytest


def location(db, table):
    return db.execute("SELECT metadata_location FROM lake_catalog.iceberg_tables "
                      "WHERE table_name = %s", (table,)).fetchone()[0]


def files(db, table):
    return sorted(db.execute("SELECT content, record_count FROM lake_iceberg.files(%s)",
                             (location(db, table),)).fetchall())


def snapshots(db, table):
    return db.execute("SELECT snapshot_id FROM lake_iceberg.snapshots(%s)", (location(db, table),)).fetchall()


def parquet_on_disk(root):
    return sorted(p.name for p in Path(root).rglob("*.parquet"))


def rows(db, table):
    return db.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


@pytest.fixture
def small_files(db, localdir):
    """Five statements, five small files, and an UPDATE's position delete file."""
    db.execute(f"CREATE TABLE v (id int, s text) USING iceberg WITH (location = '{localdir}/v')")
    for i in range(5):
        db.execute(f"INSERT INTO v SELECT g, 'r' || g FROM generate_series({i * 100}, {i * 100 + 99}) g")
    db.execute("UPDATE v SET s = 'changed' WHERE id = 7")
    return db


def test_vacuum_compacts_small_files_and_folds_their_deletes(small_files, duck):
    db = small_files
    before = rows(db, "v")
    assert len([f for f in files(db, "v") if f[0] == "DATA"]) == 6
    assert ("POSITION_DELETES", 1) in files(db, "v")
    db.execute("VACUUM v")
    assert files(db, "v") == [("DATA", 500)]
    assert rows(db, "v") == before
    assert duck.execute(f"SELECT count(*), count(*) FILTER (WHERE s = 'changed') "
                        f"FROM iceberg_scan('{location(db, 'v')}')").fetchone() == (500, 1)
    # Nothing left to compact: a second VACUUM makes no snapshot.
    n = len(snapshots(db, "v"))
    db.execute("VACUUM v")
    assert len(snapshots(db, "v")) == n


def test_vacuum_full_also_folds_the_deletes_of_large_files(db, localdir):
    db.execute(f"CREATE TABLE big (id int, pad text) USING iceberg WITH (location = '{localdir}/big')")
    db.execute("INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 60000) g")
    db.execute("DELETE FROM big WHERE id % 1000 = 0")
    db.execute("SET pg_lake_table.target_file_size_mb = 1")  # the file is over a quarter of it
    assert files(db, "big") == [("DATA", 60000), ("POSITION_DELETES", 60)]
    db.execute("VACUUM big")
    assert files(db, "big") == [("DATA", 60000), ("POSITION_DELETES", 60)]
    db.execute("VACUUM FULL big")
    assert files(db, "big") == [("DATA", 59940)]
    assert db.execute("SELECT count(*), sum(id) FROM big").fetchone() == (59940, 60000 * 60001 // 2 - 1000 * 1830)


def test_expired_snapshots_and_unreferenced_files_go_after_the_retention(small_files, localdir):
    db = small_files
    before = rows(db, "v")
    first = snapshots(db, "v")[0][0]
    on_disk = parquet_on_disk(f"{localdir}/v")
    # The default retention (10 days) keeps every file a snapshot dropped.
    db.execute("VACUUM v")
    assert set(on_disk) <= set(parquet_on_disk(f"{localdir}/v"))
    db.execute("SET pg_lake_iceberg.max_snapshot_age = 0")
    db.execute("SET pg_lake_iceberg.deletion_retention = 0")
    db.execute("VACUUM v")  # expires every snapshot but the current (compacted) one
    assert len(snapshots(db, "v")) == 1
    live = {Path(p).name for (p,) in db.execute("SELECT file_path FROM lake_iceberg.files(%s)", (location(db, "v"),))}
    assert parquet_on_disk(f"{localdir}/v") == sorted(live)
    assert rows(db, "v") == before
    assert db.execute("SELECT count(*) FROM lake_engine.deletion_queue").fetchone() == (0,)
    # Time travel to an expired snapshot is an error naming it.
    db.execute(f"SET pg_lake_iceberg.as_of = '{first}'")
    with pytest.raises(psycopg.Error, match=str(first)):
        db.execute("SELECT count(*) FROM v")
    db.execute("RESET pg_lake_iceberg.as_of")


def test_metadata_files_off_the_log_are_queued_and_go_after_the_retention(db, localdir, duck):
    """Each commit writes a metadata file; the log keeps the last 100
    (`write.metadata.previous-versions-max`), and those it drops are queued with
    the commit that dropped them and deleted by VACUUM after the retention."""
    db.execute(f"CREATE TABLE m (id int) USING iceberg WITH (location = '{localdir}/m')")
    for i in range(102):  # 103 metadata files: the CREATE's and one per INSERT
        db.execute("INSERT INTO m VALUES (%s)", (i,))

    def on_disk():
        return {str(p) for p in Path(f"{localdir}/m").rglob("*.metadata.json")}

    def logged():
        meta = db.execute("SELECT lake_iceberg.metadata(%s)", (location(db, "m"),)).fetchone()[0]
        return {e["metadata-file"] for e in meta["metadata-log"]}

    def queued():
        return {p for (p,) in db.execute(
            "SELECT path FROM lake_engine.deletion_queue WHERE path LIKE '%.metadata.json'")}

    assert len(on_disk()) == 103
    assert len(logged()) == 100
    dropped = queued()
    assert len(dropped) == 2
    assert dropped.isdisjoint(logged() | {location(db, "m")})
    assert on_disk() == logged() | {location(db, "m")} | dropped
    # A rolled-back commit queues nothing and leaves the log as it was.
    db.execute("BEGIN")
    db.execute("INSERT INTO m VALUES (-1)")
    db.execute("ROLLBACK")
    assert queued() == dropped
    db.execute("SET pg_lake_iceberg.deletion_retention = 0")
    db.execute("VACUUM m")
    assert on_disk().isdisjoint(dropped), "the queued metadata files are deleted"
    assert logged() | {location(db, "m")} <= on_disk(), "every file the log lists stays"
    assert db.execute("SELECT count(*), sum(id) FROM m").fetchone() == (102, 101 * 102 // 2)
    assert duck.execute(f"SELECT count(*) FROM iceberg_scan('{location(db, 'm')}')").fetchone() == (102,)


def test_vacuum_iceberg_does_every_table_and_the_files_of_dropped_ones(db, localdir):
    for t in ("a", "b"):
        db.execute(f"CREATE TABLE {t} (id int) USING iceberg WITH (location = '{localdir}/{t}')")
        db.execute(f"INSERT INTO {t} VALUES (1)")
        db.execute(f"INSERT INTO {t} VALUES (2)")
    db.execute("DROP TABLE b")
    assert parquet_on_disk(f"{localdir}/b")
    db.execute("SET pg_lake_iceberg.deletion_retention = 0")
    db.execute("VACUUM (ICEBERG)")
    assert files(db, "a") == [("DATA", 2)]
    assert parquet_on_disk(f"{localdir}/b") == []
    assert db.execute("SELECT id FROM a ORDER BY id").fetchall() == [(1,), (2,)]


def test_vacuum_rules(small_files, connect):
    db = small_files
    with pytest.raises(psycopg.errors.ActiveSqlTransaction):
        with db.transaction():
            db.execute("VACUUM v")
    # Heap tables and Iceberg tables in one VACUUM.
    db.execute("CREATE TABLE h (id int)")
    db.execute("VACUUM h, v")
    assert files(db, "v") == [("DATA", 500)]
    # Only the owner vacuums: others get Postgres' warning, and nothing changes.
    db.execute("CREATE ROLE vac_other LOGIN")
    try:
        db.execute("GRANT ALL ON v TO vac_other")
        db.execute("INSERT INTO v VALUES (1000, 'x')")
        other = connect(user="vac_other")
        notices = []
        other.add_notice_handler(lambda d: notices.append(d.message_primary))
        other.execute("VACUUM v")
        assert any("permission denied to vacuum" in n for n in notices), notices
        assert len(files(db, "v")) == 2
    finally:
        db.execute("DROP OWNED BY vac_other")
        db.execute("DROP ROLE vac_other")
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        db.execute("VACUUM (ICEBERG) v")


def test_autovacuum_compacts_in_the_background_and_honours_the_table_option(db, localdir):
    import time
    db.execute(f"CREATE TABLE auto (id int) USING iceberg WITH (location = '{localdir}/auto')")
    db.execute(f"CREATE TABLE manual (id int) USING iceberg WITH (location = '{localdir}/manual', "
               "autovacuum_enabled = 'false')")
    for t in ("auto", "manual"):
        for i in range(3):
            db.execute(f"INSERT INTO {t} VALUES ({i})")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="autovacuum_enabled"):
        db.execute("ALTER FOREIGN TABLE manual OPTIONS (SET autovacuum_enabled 'maybe')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="max_snapshot_age"):
        db.execute("ALTER FOREIGN TABLE manual OPTIONS (ADD max_snapshot_age '-1')")
    db.execute("ALTER SYSTEM SET pg_lake_iceberg.autovacuum = on")
    db.execute("ALTER SYSTEM SET pg_lake_iceberg.autovacuum_naptime = 1")
    db.execute("SELECT pg_reload_conf()")
    try:
        deadline = time.monotonic() + 60
        while len(files(db, "auto")) > 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert files(db, "auto") == [("DATA", 3)]
        assert len(files(db, "manual")) == 3
        assert db.execute("SELECT backend_type FROM pg_stat_activity "
                          "WHERE backend_type = 'pg_lake autovacuum launcher'").fetchall()
    finally:
        db.execute("ALTER SYSTEM RESET pg_lake_iceberg.autovacuum")
        db.execute("ALTER SYSTEM RESET pg_lake_iceberg.autovacuum_naptime")
        db.execute("SELECT pg_reload_conf()")
    assert db.execute("SELECT id FROM auto ORDER BY id").fetchall() == [(0,), (1,), (2,)]
