"""pgduck_server's extended protocol with psycopg as applications use it: parameters the
client sends without a type (psycopg sends str as `unknown`) are text, and the row
description matches the rows."""

import psycopg
import pytest


@pytest.fixture(scope="module")
def server(start_pgduck):
    return start_pgduck("wire-edges", {})


def test_untyped_text_parameters_concatenate(server):
    with psycopg.connect(server.conninfo, autocommit=True) as conn:
        assert conn.execute("SELECT %s || %s", ("a", "b")).fetchall() == [("ab",)]
        assert conn.execute("SELECT %s AS x", ("a",)).fetchall() == [("a",)]
        # Typed by the statement: still bound with the statement's type.
        assert conn.execute("SELECT r FROM range(3) t(r) WHERE r = %s", (1,)).fetchall() == [(1,)]
        assert conn.execute("SELECT %s::int + %s", (1, 2)).fetchall() == [(3,)]


def test_wrong_parameter_count_is_a_protocol_violation(server):
    with psycopg.connect(server.conninfo, autocommit=True) as conn:
        pg = conn.pgconn
        pg.prepare(b"two", b"SELECT $1::int + $2::int")
        result = pg.exec_prepared(b"two", [b"1"])
        assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"08P01"
        assert result.error_message.decode().strip().endswith(
            'bind message supplies 1 parameters, but prepared statement "two" requires 2')
        assert conn.execute("SELECT 1").fetchone() == (1,)
