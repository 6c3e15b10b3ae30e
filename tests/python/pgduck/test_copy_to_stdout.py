"""`COPY (query) TO STDOUT (FORMAT parquet | json | csv)` through pgduck_server: DuckDB
writes the file to <cache_dir>/tmp, whose bytes arrive as binary COPY-out; the temporary
file is gone afterwards, also after an error. And `COPY t FROM STDIN (FORMAT parquet|json)`."""

import io
import json
import os
from pathlib import Path

import duckdb
import psycopg
import pyarrow.parquet as pq
import pytest


def tmp_dir(pgduck) -> Path:
    return Path(pgduck["dir"]).parent / "duck-cache" / "tmp"


def copy_out(cur, sql: str) -> bytes:
    with cur.copy(sql) as copy:
        return b"".join(bytes(chunk) for chunk in copy)


def leftovers(pgduck):
    d = tmp_dir(pgduck)
    return sorted(os.listdir(d)) if d.exists() else []


def test_parquet_rows_arrive_and_the_temp_file_goes(pgduck):
    with psycopg.connect(pgduck["conninfo"], autocommit=True) as conn:
        cur = conn.cursor()
        data = copy_out(cur, "COPY (SELECT i AS id, 'row ' || i AS label FROM range(100000) t(i)) "
                             "TO STDOUT (FORMAT parquet)")
        assert cur.rowcount == 100000
        table = pq.read_table(io.BytesIO(data))
        assert table.num_rows == 100000
        assert table.column_names == ["id", "label"]
        assert table.column("id").to_pylist()[:3] == [0, 1, 2]
        assert table.column("label").to_pylist()[-1] == "row 99999"
        assert leftovers(pgduck) == []
        # The session keeps working.
        cur.execute("SELECT 41 + 1")
        assert cur.fetchone() == (42,)


def test_a_file_larger_than_one_chunk(pgduck):
    with psycopg.connect(pgduck["conninfo"], autocommit=True) as conn:
        cur = conn.cursor()
        chunks = []
        with cur.copy("COPY (SELECT i, md5(i::varchar) AS h FROM range(300000) t(i)) "
                      "TO STDOUT (FORMAT csv, HEADER false)") as copy:
            for chunk in copy:
                chunks.append(bytes(chunk))
        data = b"".join(chunks)
        assert len(data) > 3 << 20
        assert len(chunks) >= 3
        assert max(len(c) for c in chunks) <= 1 << 20
        lines = data.decode().splitlines()
        assert len(lines) == 300000
        assert lines[7].split(",")[0] == "7"
        assert cur.rowcount == 300000
        assert leftovers(pgduck) == []


def test_json_and_csv_and_a_table_name(pgduck):
    with psycopg.connect(pgduck["conninfo"], autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("CREATE OR REPLACE TABLE copy_out_t AS SELECT * FROM (VALUES (1, 'a'), (2, 'b,c')) v(x, y)")
        data = copy_out(cur, "COPY copy_out_t TO STDOUT (FORMAT json)")
        rows = [json.loads(line) for line in data.decode().splitlines()]
        assert rows == [{"x": 1, "y": "a"}, {"x": 2, "y": "b,c"}]
        assert cur.rowcount == 2
        data = copy_out(cur, "COPY (SELECT * FROM copy_out_t ORDER BY x) TO STDOUT (FORMAT csv, HEADER)")
        assert data.decode().splitlines() == ["x,y", "1,a", '2,"b,c"']
        # With parameters (extended protocol).
        with cur.copy("COPY (SELECT %s::int AS a, %s AS b) TO STDOUT (FORMAT csv, HEADER false)",
                      (7, "seven")) as copy:
            assert b"".join(bytes(c) for c in copy) == b"7,seven\n"
        assert leftovers(pgduck) == []


def test_errors_leave_no_temp_file_and_the_session_usable(pgduck):
    with psycopg.connect(pgduck["conninfo"], autocommit=True) as conn:
        cur = conn.cursor()
        with pytest.raises(psycopg.Error) as e:
            copy_out(cur, "COPY (SELECT * FROM no_such_table_xyz) TO STDOUT (FORMAT parquet)")
        assert e.value.sqlstate == "42P01"
        # Fails mid-way, once DuckDB has written part of the file.
        with pytest.raises(psycopg.Error) as e:
            copy_out(cur, "COPY (SELECT CASE WHEN i < 200000 THEN i ELSE error('boom at ' || i) END AS v "
                          "FROM range(400000) t(i)) TO STDOUT (FORMAT parquet)")
        assert "boom" in str(e.value)
        with pytest.raises(psycopg.Error) as e:
            copy_out(cur, "COPY (SELECT 1 AS a) TO STDOUT (FORMAT parquet, PARTITION_BY (a))")
        assert e.value.sqlstate == "0A000"
        assert leftovers(pgduck) == []
        cur.execute("SELECT 'still here'")
        assert cur.fetchone() == ("still here",)


def test_a_client_that_goes_away_mid_stream_leaves_no_temp_file(pgduck):
    import socket
    import time
    conn = psycopg.connect(pgduck["conninfo"], autocommit=True)
    cur = conn.cursor()
    try:
        with cur.copy("COPY (SELECT i, md5(i::varchar) AS h FROM range(2000000) t(i)) "
                      "TO STDOUT (FORMAT csv)") as copy:
            assert copy.read()
            # The file is there while it streams...
            assert len(leftovers(pgduck)) == 1
            # ...and the connection goes away under the COPY (shutdown of a duplicate
            # descriptor: psycopg's own stays valid until it closes it).
            socket.socket(fileno=os.dup(conn.pgconn.socket)).shutdown(socket.SHUT_RDWR)
    except psycopg.Error:
        pass
    finally:
        conn.close()
    for _ in range(100):
        if leftovers(pgduck) == []:
            break
        time.sleep(0.1)
    assert leftovers(pgduck) == []


def test_copy_from_stdin_parquet_and_json(pgduck, tmp_path):
    src = tmp_path / "in.parquet"
    duckdb.connect().execute(f"COPY (SELECT i AS x, 'v' || i AS y FROM range(1000) t(i)) TO '{src}' (FORMAT parquet)")
    with psycopg.connect(pgduck["conninfo"], autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("CREATE OR REPLACE TABLE copy_in_p (x BIGINT, y VARCHAR)")
        with cur.copy("COPY copy_in_p FROM STDIN (FORMAT parquet)") as copy:
            copy.write(src.read_bytes())
        assert cur.rowcount == 1000
        cur.execute("SELECT count(*), sum(x), max(y) FROM copy_in_p")
        assert cur.fetchone() == (1000, 499500, "v999")
        cur.execute("CREATE OR REPLACE TABLE copy_in_j (x BIGINT, y VARCHAR)")
        with cur.copy("COPY copy_in_j FROM STDIN (FORMAT json)") as copy:
            copy.write(b'{"x": 1, "y": "one"}\n{"x": 2, "y": "two"}\n')
        cur.execute("SELECT * FROM copy_in_j ORDER BY x")
        assert cur.fetchall() == [(1, "one"), (2, "two")]
        # A Parquet file round trip: out of one table, into another.
        data = copy_out(cur, "COPY copy_in_p TO STDOUT (FORMAT parquet)")
        cur.execute("CREATE OR REPLACE TABLE copy_in_p2 (x BIGINT, y VARCHAR)")
        with cur.copy("COPY copy_in_p2 FROM STDIN (FORMAT parquet)") as copy:
            copy.write(data)
        cur.execute("SELECT count(*), sum(x) FROM copy_in_p2")
        assert cur.fetchone() == (1000, 499500)
