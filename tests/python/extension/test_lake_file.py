"""lake_file.list / exists / size / preview."""

import psycopg
import pytest


def test_list_exists_size(db, duck, s3url):
    duck.execute(f"COPY (SELECT range AS x FROM range(100)) TO '{s3url}/d/a.parquet'")
    duck.execute(f"COPY (SELECT range AS x FROM range(5)) TO '{s3url}/d/sub/b.csv'")
    rows = db.execute(
        "SELECT path, file_size, last_modified_time IS NOT NULL FROM lake_file.list(%s)",
        (f"{s3url}/d/**",)).fetchall()
    assert [r[0] for r in rows] == [f"{s3url}/d/a.parquet", f"{s3url}/d/sub/b.csv"]
    assert all(r[1] > 0 and r[2] for r in rows)
    assert db.execute("SELECT count(*) FROM lake_file.list(%s)", (f"{s3url}/d/*.parquet",)).fetchone() == (1,)
    assert db.execute("SELECT lake_file.exists(%s)", (f"{s3url}/d/a.parquet",)).fetchone() == (True,)
    assert db.execute("SELECT lake_file.exists(%s)", (f"{s3url}/d/nope.parquet",)).fetchone() == (False,)
    size = db.execute("SELECT lake_file.size(%s)", (f"{s3url}/d/a.parquet",)).fetchone()[0]
    assert size == rows[0][1]


def test_list_reports_entity_tags(db, duck, s3url, moto):
    """etag is the object store's own tag (boto3 sees the same) and changes with the file."""
    duck.execute(f"COPY (SELECT 1 AS x) TO '{s3url}/e/a.parquet'")
    duck.execute(f"COPY (SELECT 2 AS x) TO '{s3url}/e/deeper/b.parquet'")
    key = s3url.split("/", 3)[3]
    tags = dict(db.execute("SELECT path, etag FROM lake_file.list(%s)", (f"{s3url}/e/**",)).fetchall())
    for name in ("a.parquet", "deeper/b.parquet"):
        head = moto["s3"].head_object(Bucket=moto["bucket"], Key=f"{key}/e/{name}")
        assert tags[f"{s3url}/e/{name}"] == head["ETag"], name
    # A plain URL and a one-level glob: one HEAD, one listing.
    plain = db.execute("SELECT etag FROM lake_file.list(%s)", (f"{s3url}/e/a.parquet",)).fetchone()[0]
    assert plain == tags[f"{s3url}/e/a.parquet"]
    assert db.execute("SELECT count(*), count(etag) FROM lake_file.list(%s)",
                      (f"{s3url}/e/*.parquet",)).fetchone() == (1, 1)
    # A one-level pattern lists one level (with a delimiter), not the whole tree below.
    assert duck.execute("SELECT path FROM pg_lake_file_etags(%s)", (f"{s3url}/e/*.parquet",)).fetchall() \
        == [(f"{s3url}/e/a.parquet",)]
    assert len(duck.execute("SELECT path FROM pg_lake_file_etags(%s)", (f"{s3url}/e/**",)).fetchall()) == 2
    duck.execute(f"COPY (SELECT 3 AS x, 4 AS y) TO '{s3url}/e/a.parquet'")
    again = db.execute("SELECT etag FROM lake_file.list(%s)", (f"{s3url}/e/a.parquet",)).fetchone()[0]
    assert again is not None and again != plain


def test_list_reports_local_entity_tags(db, localdir):
    (localdir / "a.csv").write_text("x\n1\n")
    (localdir / "sub").mkdir()
    (localdir / "sub" / "b.csv").write_text("x\n2\n")
    rows = db.execute("SELECT path, etag FROM lake_file.list(%s)", (f"{localdir}/**/*.csv",)).fetchall()
    assert [r[0] for r in rows] == [f"{localdir}/a.csv", f"{localdir}/sub/b.csv"]
    assert all(r[1] for r in rows) and rows[0][1] != rows[1][1]
    before = rows[0][1]
    (localdir / "a.csv").write_text("x\n1\n2\n")
    after = db.execute("SELECT etag FROM lake_file.list(%s)", (f"{localdir}/a.csv",)).fetchone()[0]
    assert after is not None and after != before


def test_size_of_missing_file(db, s3url):
    with pytest.raises(psycopg.Error) as e:
        db.execute("SELECT lake_file.size(%s)", (f"{s3url}/missing.parquet",))
    assert "missing.parquet" in str(e.value)


def test_preview_maps_types(db, duck, s3url):
    duck.execute(f"""COPY (SELECT true AS b, 1::TINYINT AS i1, 2::INTEGER AS i4, 3::BIGINT AS i8,
        1.5::FLOAT AS f4, 2.5::DOUBLE AS f8, 1.25::DECIMAL(10,2) AS d, 'x' AS s, '\\x01'::BLOB AS bl,
        DATE '2024-01-02' AS dt, TIME '12:00:00' AS t, TIMESTAMP '2024-01-01 00:00:00' AS ts,
        TIMESTAMPTZ '2024-01-01 00:00:00+00' AS tz, INTERVAL 1 DAY AS iv, uuid() AS u,
        [1, 2] AS l, {{'a': 1, 'b': 'x'}} AS st) TO '{s3url}/types.parquet'""")
    rows = dict(db.execute("SELECT * FROM lake_file.preview(%s)", (f"{s3url}/types.parquet",)).fetchall())
    assert rows == {
        "b": "boolean", "i1": "smallint", "i4": "integer", "i8": "bigint", "f4": "real",
        "f8": "double precision", "d": "numeric(10,2)", "s": "text", "bl": "bytea", "dt": "date",
        "t": "time without time zone", "ts": "timestamp without time zone",
        "tz": "timestamp with time zone", "iv": "interval", "u": "uuid",
        "l": "integer[]", "st": 'record("a" integer, "b" text)',
    }


@pytest.mark.parametrize("url,message", [
    ("ftp://host/x.parquet", 'unsupported URL scheme "ftp"'),
    ("relative/x.parquet", "path"),
])
def test_bad_urls(db, url, message):
    with pytest.raises(psycopg.Error) as e:
        db.execute("SELECT * FROM lake_file.preview(%s)", (url,))
    assert message in str(e.value)
    assert db.execute("SELECT 1").fetchone() == (1,)


def test_preview_of_missing_file_keeps_session(db, s3url):
    with pytest.raises(psycopg.Error) as e:
        db.execute("SELECT * FROM lake_file.preview(%s)", (f"{s3url}/none.parquet",))
    assert "none.parquet" in str(e.value)
    assert db.execute("SELECT lake_file.exists(%s)", (f"{s3url}/none.parquet",)).fetchone() == (False,)


def test_access_needs_lake_read(connect, db, duck, s3url, localdir):
    duck.execute(f"COPY (SELECT 1 AS x) TO '{s3url}/p.parquet'")
    db.execute("CREATE ROLE outsider LOGIN")
    db.execute("CREATE ROLE reader LOGIN IN ROLE lake_read")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connect(user="outsider").execute("SELECT lake_file.exists(%s)", (f"{s3url}/p.parquet",))
        reader = connect(user="reader")
        assert reader.execute("SELECT lake_file.exists(%s)", (f"{s3url}/p.parquet",)).fetchone() == (True,)
        # Local files belong to the database server: lake_read is not enough.
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
            reader.execute("SELECT lake_file.exists(%s)", (f"{localdir}/x.parquet",))
        assert "pg_read_server_files" in str(e.value)
    finally:
        db.execute("DROP OWNED BY outsider, reader")
        db.execute("DROP ROLE outsider, reader")


def test_delete_is_off_unless_enabled_and_needs_write_rights(connect, db, duck, s3url, localdir):
    url = f"{s3url}/gone.parquet"
    duck.execute(f"COPY (SELECT 1 AS x) TO '{url}'")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as e:
        db.execute("SELECT lake_file.delete(%s)", (url,))
    assert "file deletion has been disabled" in str(e.value)
    db.execute("CREATE ROLE deleter LOGIN IN ROLE lake_read")
    try:
        user = connect(user="deleter")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            user.execute("SET pg_lake_table.enable_delete_file_function = on")
        db.execute("SET pg_lake_table.enable_delete_file_function = on")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            db.execute("SELECT lake_file.delete(%s)", (f"{s3url}/*.parquet",))
        db.execute("ALTER ROLE deleter SET pg_lake_table.enable_delete_file_function = on")
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
            connect(user="deleter").execute("SELECT lake_file.delete(%s)", (url,))
        assert "lake_write" in str(e.value)
        assert db.execute("SELECT lake_file.exists(%s)", (url,)).fetchone() == (True,)
        db.execute("SELECT lake_file.delete(%s)", (url,))
        assert db.execute("SELECT lake_file.exists(%s)", (url,)).fetchone() == (False,)
        local = localdir / "gone.csv"
        local.write_text("1\n")
        local.chmod(0o666)
        db.execute("SELECT lake_file.delete(%s)", (str(local),))
        assert not local.exists()
    finally:
        db.execute("DROP OWNED BY deleter")
        db.execute("DROP ROLE deleter")


def test_listings_see_changes_made_by_other_engines(db, duck, s3url, moto):
    """No stale listing: files another engine adds or removes show up at once."""
    url = f"{s3url}/other.parquet"
    assert db.execute("SELECT lake_file.exists(%s)", (url,)).fetchone() == (False,)
    duck.execute(f"COPY (SELECT 1 AS x) TO '{url}'")
    assert db.execute("SELECT lake_file.exists(%s)", (url,)).fetchone() == (True,)
    assert db.execute("SELECT count(*) FROM lake_file.list(%s)", (f"{s3url}/*",)).fetchone() == (1,)
    moto["s3"].delete_object(Bucket="lake", Key=url.split("/", 3)[3])
    assert db.execute("SELECT lake_file.exists(%s)", (url,)).fetchone() == (False,)
    assert db.execute("SELECT count(*) FROM lake_file.list(%s)", (f"{s3url}/*",)).fetchone() == (0,)


def test_a_glob_table_sees_files_added_later_in_the_same_session(db, duck, s3url):
    duck.execute(f"COPY (SELECT 1 AS x) TO '{s3url}/g/a.parquet'")
    db.execute(f"CREATE FOREIGN TABLE g (x int) SERVER pg_lake OPTIONS (path '{s3url}/g/*.parquet')")
    assert db.execute("SELECT count(*) FROM g").fetchone() == (1,)
    duck.execute(f"COPY (SELECT 2 AS x) TO '{s3url}/g/b.parquet'")
    assert db.execute("SELECT count(*), sum(x) FROM g").fetchone() == (2, 3)
