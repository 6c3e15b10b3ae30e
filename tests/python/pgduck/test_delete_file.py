"""`pg_lake_delete_file(url)`: deletes one object (moto's S3, and gs:// through the same
moto) or one local file, refuses patterns, names a missing file, and drops the cached
copy of what it deleted."""

import io
import os
import shutil

import botocore
import duckdb
import psycopg
import pytest

from lake_testing import wait_for

# The OS user pgduck_server runs as in the fixtures (tests/python/conftest.py). Not imported
# from there: "conftest" names several modules once every suite is collected.
NODE_USER = "postgres" if os.geteuid() == 0 else None


def parquet_bytes() -> bytes:
    path = "/tmp/pg-lake-delete-test.parquet"
    duckdb.connect().execute(f"COPY (SELECT range AS x FROM range(10)) TO '{path}'")
    with open(path, "rb") as f:
        return f.read()


def exists(moto, key):
    try:
        moto["s3"].head_object(Bucket=moto["bucket"], Key=key)
        return True
    except botocore.exceptions.ClientError:
        return False


def test_deletes_one_s3_object_and_its_cached_copy(pgduck, moto):
    key, other = "delete-test/a.parquet", "delete-test/b.parquet"
    for k in (key, other):
        moto["s3"].put_object(Bucket=moto["bucket"], Key=k, Body=parquet_bytes())
    url = f"s3://{moto['bucket']}/{key}"
    with psycopg.connect(pgduck["conninfo"], autocommit=True) as conn:
        # Cache a copy first.
        def cached():
            conn.execute(f"SELECT count(*) FROM read_parquet('{url}')").fetchone()
            return conn.execute("SELECT count(*) FROM pg_lake_cache.files WHERE url = %s",
                                (url,)).fetchone()[0] == 1
        wait_for(cached, "a cached copy")
        rows = conn.execute(f"SELECT * FROM pg_lake_delete_file('{url}')").fetchall()
        assert rows == [(url,)]
        assert not exists(moto, key)
        assert exists(moto, other)
        assert conn.execute("SELECT count(*) FROM pg_lake_cache.files WHERE url = %s",
                            (url,)).fetchone() == (0,)
        # The copy is gone: reading the URL now fails as the object does.
        with pytest.raises(psycopg.Error):
            conn.execute(f"SELECT count(*) FROM read_parquet('{url}')")
        # Deleting it again names the missing file.
        with pytest.raises(psycopg.Error) as e:
            conn.execute(f"SELECT * FROM pg_lake_delete_file('{url}')")
        assert url in str(e.value) and "does not exist" in str(e.value)
        assert e.value.sqlstate == "58P01"
        # Prepared (extended protocol: described, then run once) with a parameter.
        other_url = f"s3://{moto['bucket']}/{other}"
        rows = conn.execute("SELECT * FROM pg_lake_delete_file(%s)", (other_url,),
                            prepare=True).fetchall()
        assert rows == [(other_url,)]
        assert not exists(moto, other)


def test_gs_urls_go_through_the_same_store(pgduck, moto):
    moto["s3"].put_object(Bucket=moto["bucket"], Key="delete-test/g.parquet", Body=b"x")
    url = f"gs://{moto['bucket']}/delete-test/g.parquet"
    with psycopg.connect(pgduck["conninfo"], autocommit=True) as conn:
        assert conn.execute(f"SELECT url FROM pg_lake_delete_file('{url}')").fetchall() == [(url,)]
    assert not exists(moto, "delete-test/g.parquet")


def test_patterns_are_refused(pgduck, moto):
    moto["s3"].put_object(Bucket=moto["bucket"], Key="delete-test/keep.parquet", Body=b"x")
    with psycopg.connect(pgduck["conninfo"], autocommit=True) as conn:
        for pattern in ("delete-test/*.parquet", "delete-test/kee?.parquet", "delete-test/[k]eep.parquet"):
            with pytest.raises(psycopg.Error) as e:
                conn.execute(f"SELECT * FROM pg_lake_delete_file('s3://{moto['bucket']}/{pattern}')")
            assert "wildcard" in str(e.value) and e.value.sqlstate == "22023"
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert exists(moto, "delete-test/keep.parquet")


def test_local_files(pgduck, tmp_path):
    d = tmp_path / "local"
    d.mkdir()
    f = d / "one.csv"
    f.write_text("a\n")
    keep = d / "two.csv"
    keep.write_text("b\n")
    if NODE_USER:
        for p in (tmp_path, d, f, keep):
            shutil.chown(p, NODE_USER, NODE_USER)
    with psycopg.connect(pgduck["conninfo"], autocommit=True) as conn:
        assert conn.execute(f"SELECT * FROM pg_lake_delete_file('{f}')").fetchall() == [(str(f),)]
        assert not f.exists() and keep.exists()
        with pytest.raises(psycopg.Error) as e:
            conn.execute(f"SELECT * FROM pg_lake_delete_file('{f}')")
        assert str(f) in str(e.value) and "does not exist" in str(e.value)
        assert e.value.sqlstate == "58P01"
        url = f"file://{keep}"
        assert conn.execute(f"SELECT * FROM pg_lake_delete_file('{url}')").fetchall() == [(url,)]
        assert not keep.exists()
        with pytest.raises(psycopg.Error) as e:
            conn.execute(f"SELECT * FROM pg_lake_delete_file('{d}')")
        assert "directory" in str(e.value) and e.value.sqlstate == "22023"
        assert d.exists()
        with pytest.raises(psycopg.Error) as e:
            conn.execute("SELECT * FROM pg_lake_delete_file('az://container/k.parquet')")
        assert "no credentials for az://" in str(e.value) and e.value.sqlstate == "58030"
