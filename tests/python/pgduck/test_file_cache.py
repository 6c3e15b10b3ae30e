"""pgduck_server's local file cache: remote files read through DuckDB's readers are copied
under --cache_dir/files, reused while the object is unchanged, evicted least recently used
beyond --cache_size, and kept across restarts. Object storage is moto's S3 server."""

import io

import duckdb
import psycopg
import pytest

from lake_testing import wait_for

FILES = 6


def parquet_bytes(n: int) -> bytes:
    """A Parquet file of `n` rows; the same `n` gives the same size."""
    con = duckdb.connect()
    out = io.BytesIO()
    path = f"/tmp/pg-lake-cache-test-{n}.parquet"
    con.execute(f"COPY (SELECT range AS x, 'row ' || range AS label FROM range({n})) TO '{path}'")
    with open(path, "rb") as f:
        out.write(f.read())
    return out.getvalue()


@pytest.fixture
def objects(moto):
    """Six equally sized Parquet objects; returns their URLs and the size of one."""
    body = parquet_bytes(1000)
    urls = []
    for i in range(FILES):
        key = f"cache-test/part={i}/f{i}.parquet"
        moto["s3"].put_object(Bucket=moto["bucket"], Key=key, Body=body)
        urls.append(f"s3://{moto['bucket']}/{key}")
    return urls, len(body)


def s3_env(moto):
    return {"AWS_ACCESS_KEY_ID": moto["key"], "AWS_SECRET_ACCESS_KEY": moto["secret"],
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto["endpoint"], "PG_LAKE_S3_URL_STYLE": "path"}


def cached(conn):
    return {url: (hits, size) for url, hits, size in
            conn.execute("SELECT url, hits, size FROM pg_lake_cache.files").fetchall()}


def test_copies_are_reused_validated_evicted_and_kept(objects, moto, start_pgduck, tmp_path):
    urls, size = objects
    cache_dir = tmp_path / "cache"
    limit = int(size * 4.5)  # four copies fit; a file may take at most a quarter
    args = ["--cache_dir", str(cache_dir), "--cache_size", str(limit)]
    server = start_pgduck("file-cache-1", s3_env(moto), args)
    local = cache_dir / "files" / "s3" / moto["bucket"] / "cache-test" / "part=0" / "f0.parquet"

    with psycopg.connect(server.conninfo, autocommit=True) as c:
        read = f"SELECT count(*), sum(x) FROM read_parquet('{urls[0]}')"
        assert c.execute(read).fetchone() == (1000, 499500)
        wait_for(lambda: urls[0] in cached(c), "the first copy")
        assert local.stat().st_size == size
        assert cached(c)[urls[0]] == (0, size)
        # A hit reads the copy (same answer) and is counted.
        assert c.execute(read).fetchone() == (1000, 499500)
        assert cached(c)[urls[0]][0] == 1
        # hive columns still come from the (mirrored) path; filename= is never rewritten.
        assert c.execute(f"SELECT DISTINCT part FROM read_parquet('{urls[0]}', hive_partitioning = true)"
                         ).fetchall() == [(0,)]
        assert c.execute(f"SELECT DISTINCT filename FROM read_parquet('{urls[0]}', filename = true)"
                         ).fetchall() == [(urls[0],)]

        # The object changes: the stale copy is not used, and is dropped.
        moto["s3"].put_object(Bucket=moto["bucket"], Key="cache-test/part=0/f0.parquet",
                              Body=parquet_bytes(10))
        assert c.execute(read).fetchone() == (10, 45)
        assert urls[0] not in cached(c) or cached(c)[urls[0]][1] != size
        wait_for(lambda: cached(c).get(urls[0], (0, 0))[1] not in (0, size), "the fresh copy")
        assert c.execute(read).fetchone() == (10, 45)

        # Read the others in turn: the least recently used copies go beyond the limit.
        for url in urls[1:]:
            assert c.execute(f"SELECT count(*) FROM read_parquet('{url}')").fetchone() == (1000,)
            wait_for(lambda: url in cached(c), f"a copy of {url}")
        now = cached(c)
        assert sum(s for _, s in now.values()) <= limit
        assert set(now) == set(urls[-4:])
        on_disk = sorted(p.name for p in (cache_dir / "files").rglob("*.parquet"))
        assert on_disk == sorted(f"f{i}.parquet" for i in range(FILES - 4, FILES))

        # Several files in one call, some cached and some not: all rows, right values.
        both = f"SELECT count(*), sum(x) FROM read_parquet(['{urls[0]}', '{urls[-1]}'])"
        assert c.execute(both).fetchone() == (1010, 45 + 499500)

    server.stop()
    again = start_pgduck("file-cache-2", s3_env(moto), args)
    with psycopg.connect(again.conninfo, autocommit=True) as c:
        kept = cached(c)
        assert urls[-1] in kept and len(kept) >= 3
        assert c.execute(f"SELECT count(*) FROM read_parquet('{urls[-1]}')").fetchone() == (1000,)
        assert cached(c)[urls[-1]][0] == 1


def test_globs_and_writes_bypass_the_cache(objects, moto, start_pgduck, tmp_path):
    urls, _ = objects
    cache_dir = tmp_path / "cache"
    server = start_pgduck("file-cache-glob", s3_env(moto), ["--cache_dir", str(cache_dir)])
    with psycopg.connect(server.conninfo, autocommit=True) as c:
        glob = f"s3://{moto['bucket']}/cache-test/*/*.parquet"
        assert c.execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone() == (FILES * 1000,)
        c.execute(f"COPY (SELECT 1 AS x) TO 's3://{moto['bucket']}/cache-test/out.parquet'")
        assert cached(c) == {}
        assert list((cache_dir / "files").rglob("*.parquet")) == []
