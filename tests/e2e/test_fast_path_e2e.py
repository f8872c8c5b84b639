"""Negative tests of the policy fast path (gateway/policy/reuse.py) through real clients.

A session that repeats a statement gets its earlier plain decision back without it being
worked out again; these tests warm that reuse with psycopg (extended protocol, then named
prepared statements) and simple queries, then move what the decision was made on — a view
redefined over a PHI table by DDL, another user or session sending the same text — and
check that the statement is decided as a fresh one would be. (A policy reload: see
tests/e2e/test_policies_e2e.py; masking: tests/e2e/test_masking_e2e.py.)
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from tests.e2e.harness import CLINIC_POLICY, GatewayProcess

pytestmark = pytest.mark.usefixtures("service_may_create")

NIGHT = "2024-06-04T23:30:00-04:00"  # outside the engineers' no-DDL window (clinic.yaml)
VIEW = "fast_path.v"  # its own schema: the service role may not create in public
READ_VIEW = f"SELECT * FROM {VIEW}"


def _warm(conn: psycopg.Connection[tuple[object, ...]], sql: str) -> None:
    """Send ``sql`` often enough that both protocols' decisions are kept for reuse."""
    for _ in range(6):  # psycopg prepares it by name from the 5th execution on
        conn.execute(sql).fetchall()
        assert conn.pgconn.exec_(sql.encode()).status == psycopg.pq.ExecStatus.TUPLES_OK


def _sqlstate(conn: psycopg.Connection[tuple[object, ...]], sql: str) -> bytes | None:
    return conn.pgconn.exec_(sql.encode()).error_field(psycopg.pq.DiagnosticField.SQLSTATE)


def test_a_view_redefined_over_phi_is_not_read_with_the_old_decision(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    """A break-glass session reads a view, warm, then redefines it over a PHI table: its
    next read of the view is the bulk export it now is, and so for a new session."""
    gateway = start_gateway({"policies": [str(CLINIC_POLICY)]})
    with psycopg.connect(gateway.dsn("oncall"), autocommit=True,
                         options="-c phigate.reason=INC-16") as dba:
        dba.execute("DROP SCHEMA IF EXISTS fast_path CASCADE")
        dba.execute("CREATE SCHEMA fast_path")
        dba.execute(f"CREATE VIEW {VIEW} AS SELECT code FROM departments")
        try:
            _warm(dba, READ_VIEW)  # not PHI: no bulk export
            dba.execute(f"CREATE OR REPLACE VIEW {VIEW} AS SELECT mrn AS code FROM patients")
            assert _sqlstate(dba, READ_VIEW) == b"42501"
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                dba.execute(READ_VIEW)
            with psycopg.connect(gateway.dsn("alice"), autocommit=True) as alice:
                assert _sqlstate(alice, READ_VIEW) == b"42501"
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    alice.execute(READ_VIEW)
        finally:
            dba.execute("DROP SCHEMA fast_path CASCADE")


def test_another_user_or_session_does_not_inherit_a_decision(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway({"policies": [str(CLINIC_POLICY)]},
                            env={"PHIGATE_TEST_NOW": NIGHT})
    sql = "SELECT code FROM departments WHERE length(code) > 1"
    with psycopg.connect(gateway.dsn("bob"), autocommit=True) as bob:
        _warm(bob, sql)
        # break-glass without a reason: the same text (and one of its shape) is refused
        with psycopg.connect(gateway.dsn("oncall"), autocommit=True) as oncall:
            assert _sqlstate(oncall, sql) == b"42501"
            assert _sqlstate(oncall, sql.replace("> 1", "> 2")) == b"42501"
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                oncall.execute(sql)
        # bob's other session decides on its own, and bob's first session goes on
        with psycopg.connect(gateway.dsn("bob"), autocommit=True) as second:
            assert second.execute(sql).fetchall()
        assert bob.execute(sql).fetchall()
