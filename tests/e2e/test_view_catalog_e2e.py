"""Known gaps in how the policy sees views: each test states the decision a session should
get and is marked ``xfail(strict=True)`` until the gap is closed (then it passes and the
marker must go: a strict xfail that passes fails the suite).

The policy reads a session's view dependencies at connect and after the session's own DDL,
on a catalog connection of its own. So a view made by *another* session after this one
connected is unknown to it, and a view made inside this session's still-open transaction
is invisible to the catalog connection: both read as no PHI. README "Policies" states
both with the interim mitigation.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from tests.e2e.harness import CLINIC_POLICY, GatewayProcess

pytestmark = pytest.mark.usefixtures("service_may_create")

GAP = "known gap: view dependencies are per session and read outside its transaction"


def _sqlstate(conn: psycopg.Connection[tuple[object, ...]], sql: str) -> bytes | None:
    return conn.pgconn.exec_(sql.encode()).error_field(psycopg.pq.DiagnosticField.SQLSTATE)


@pytest.fixture
def gateway(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    return start_gateway({"policies": [str(CLINIC_POLICY)]})


@pytest.fixture
def dba(gateway: GatewayProcess):  # type: ignore[no-untyped-def]
    with psycopg.connect(gateway.dsn("oncall"), autocommit=True,
                         options="-c phigate.reason=INC-16") as conn:
        conn.execute("DROP SCHEMA IF EXISTS view_gaps CASCADE")
        conn.execute("CREATE SCHEMA view_gaps")
        yield conn
        conn.rollback()
        conn.execute("DROP SCHEMA view_gaps CASCADE")


@pytest.mark.xfail(strict=True, reason=GAP)
def test_a_view_another_session_makes_over_phi_is_phi(
        gateway: GatewayProcess, dba: psycopg.Connection[tuple[object, ...]]) -> None:
    with psycopg.connect(gateway.dsn("alice"), autocommit=True) as alice:
        assert _sqlstate(alice, "SELECT mrn FROM patients") == b"42501"  # the bulk block
        dba.execute("CREATE VIEW view_gaps.v AS SELECT mrn FROM patients")
        assert _sqlstate(alice, "SELECT * FROM view_gaps.v") == b"42501"


@pytest.mark.xfail(strict=True, reason=GAP)
def test_a_view_made_in_the_open_transaction_over_phi_is_phi(
        dba: psycopg.Connection[tuple[object, ...]]) -> None:
    dba.execute("BEGIN")
    dba.execute("CREATE VIEW view_gaps.t AS SELECT mrn FROM patients")
    assert _sqlstate(dba, "SELECT * FROM view_gaps.t") == b"42501"
