"""What masking sees of catalog changes: every shape an insider who may run DDL can try to see
clear identifiers with, through a real ``phigate serve``; each read is masked or refused.

The masking catalog (``gateway/masking/catalog.py``) follows the policy's change signals: DDL
through the gateway once its transaction ends, a relation the policy looks up, and the
fingerprint poll (``limits.catalog_poll_interval``) for DDL made directly on the database. While
a masked session's own DDL is in flight or not committed, its reads are refused; a result
column from a relation or column the catalog does not list is refused, and the catalog is read
again for the next statement. README "Live masking" states the guarantee.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.conftest import ClusterInfo
from tests.e2e.harness import FIXTURES, GatewayProcess

pytestmark = pytest.mark.usefixtures("service_may_create")

Conn = psycopg.Connection[tuple[object, ...]]
SCHEMA = "mask_gaps"
HARMLESS = "SELECT code AS who FROM departments"  # no identifier, a text column
WHO = "SELECT last_name AS who FROM patients WHERE id = 7"  # redacted for engineers
POLL_WAIT_S = 30.0  # a loaded machine may be slow to poll; the tests wait until it is seen
REDACTED = "****"


def _policy(tmp: Path) -> Path:
    """The masking fixture, plus an sre rule that may run DDL (another session's changes)."""
    policy = yaml.safe_load((FIXTURES / "masking.yaml").read_text(encoding="utf-8"))
    policy["rules"].append({"name": "sre-ddl", "groups": ["sre"],
                            "allow": ["ddl", "transaction", "session", "select"]})
    path = tmp / "masking-ddl.yaml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return path


def _gateway(pg_cluster: ClusterInfo, tmp: Path, poll: str | int) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp, pg_cluster, {
        "policies": [str(_policy(tmp))], "limits": {"catalog_poll_interval": poll}}).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def polled(pg_cluster: ClusterInfo, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[GatewayProcess]:
    yield from _gateway(pg_cluster, tmp_path_factory.mktemp("mask-polled"), "200ms")


@pytest.fixture(scope="module")
def unpolled(pg_cluster: ClusterInfo, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[GatewayProcess]:
    yield from _gateway(pg_cluster, tmp_path_factory.mktemp("mask-unpolled"), 0)


@pytest.fixture
def direct(pg_cluster: ClusterInfo) -> Iterator[Conn]:
    """A superuser connection that bypasses the gateway, and a fresh schema to change."""
    with psycopg.connect(pg_cluster.superuser_dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(f"GRANT USAGE, CREATE ON SCHEMA {SCHEMA} TO {pg_cluster.service_user}")
        conn.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SCHEMA} "
                     f"GRANT SELECT ON TABLES TO {pg_cluster.service_user}")
        yield conn
        conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")


def _view(direct: Conn, name: str, sql: str, owner: str) -> None:
    """A view made directly that ``owner`` (the gateway's upstream role) may alter."""
    direct.execute(f"CREATE VIEW {SCHEMA}.{name} AS {sql}")
    direct.execute(f"ALTER VIEW {SCHEMA}.{name} OWNER TO {owner}")


@pytest.fixture
def clear_name(direct: Conn) -> str:
    row = direct.execute("SELECT last_name FROM patients WHERE id = 7").fetchone()
    assert row is not None and row[0] != REDACTED
    return str(row[0])


def _connect(gateway: GatewayProcess, user: str = "bob") -> Conn:
    conn = psycopg.connect(gateway.dsn(user), autocommit=True)
    if user == "bob":  # the masking catalog is read before any change below
        assert _read(conn, "SELECT last_name FROM patients WHERE id = 7") == REDACTED
    return conn


def _read(conn: Conn, sql: str) -> str | None:
    """The first value, or None when the gateway refused the statement (42501 phigate:)."""
    result = conn.pgconn.exec_(sql.encode())
    sqlstate = result.error_field(psycopg.pq.DiagnosticField.SQLSTATE)
    if sqlstate is not None:
        message = (result.error_field(psycopg.pq.DiagnosticField.MESSAGE_PRIMARY)
                   or b"").decode()
        assert sqlstate == b"42501" and message.startswith("phigate:"), message
        return None
    value = result.get_value(0, 0) if result.ntuples else None
    return value.decode() if value is not None else None


def _until_masked(conn: Conn, sql: str, clear: str) -> None:
    """Every answer is refused or masked, never clear, until one is masked."""
    deadline = time.monotonic() + POLL_WAIT_S
    while (value := _read(conn, sql)) != REDACTED:
        assert value != clear, f"{sql!r} showed the clear identifier"
        assert time.monotonic() < deadline, f"{sql!r} never came back masked"
        time.sleep(0.05)


# ---------------------------------------------------------------- made directly on the database

def test_a_view_made_directly_over_identifiers_is_masked(
        unpolled: GatewayProcess, direct: Conn, clear_name: str) -> None:
    with _connect(unpolled) as bob:
        direct.execute(f"CREATE VIEW {SCHEMA}.v AS {WHO}")
        assert _read(bob, f"SELECT who FROM {SCHEMA}.v") == REDACTED  # looked up: a new name


def test_a_view_replaced_directly_is_masked_once_the_poll_sees_it(
        polled: GatewayProcess, direct: Conn, clear_name: str) -> None:
    direct.execute(f"CREATE VIEW {SCHEMA}.h AS {HARMLESS}")
    with _connect(polled) as bob:
        assert _read(bob, f"SELECT who FROM {SCHEMA}.h ORDER BY 1 LIMIT 1") not in (None,
                                                                                 REDACTED)
        direct.execute(f"CREATE OR REPLACE VIEW {SCHEMA}.h AS {WHO}")
        deadline = time.monotonic() + POLL_WAIT_S
        while _read(bob, f"SELECT who FROM {SCHEMA}.h") != REDACTED:  # the poll's window
            assert time.monotonic() < deadline, "the poll never reached masking"
            time.sleep(0.05)
        assert _read(bob, f"SELECT who || '' FROM {SCHEMA}.h") is None  # derived: refused


def test_a_column_added_directly_is_masked(unpolled: GatewayProcess, direct: Conn) -> None:
    # encounters is a PHI table without phi_columns: each of its columns is an identifier
    first = "SELECT min(id) FROM encounters"
    with _connect(unpolled) as bob:
        assert _read(bob, f"SELECT reason FROM encounters WHERE id = ({first})") == REDACTED
        direct.execute("ALTER TABLE encounters ADD COLUMN mask_gap_copy text")
        try:
            direct.execute(f"UPDATE encounters SET mask_gap_copy = 'copied' WHERE id = ({first})")
            sql = f"SELECT mask_gap_copy FROM encounters WHERE id = ({first})"
            assert _read(bob, sql) is None  # a column masking never read: refused ...
            assert _read(bob, sql) == REDACTED  # ... and read for the next statement
        finally:
            direct.execute("ALTER TABLE encounters DROP COLUMN mask_gap_copy")


def test_a_column_renamed_directly_is_seen_by_the_poll(
        polled: GatewayProcess, direct: Conn, clear_name: str) -> None:
    direct.execute(f"CREATE VIEW {SCHEMA}.p AS {WHO}")
    with _connect(polled) as bob:
        assert _read(bob, f"SELECT who || '' FROM {SCHEMA}.p") is None  # derived: refused
        direct.execute(f"ALTER VIEW {SCHEMA}.p RENAME COLUMN who TO renamed")
        _until_masked(bob, f"SELECT renamed FROM {SCHEMA}.p", clear_name)  # by its source
        deadline = time.monotonic() + POLL_WAIT_S  # the taint check goes by name
        while (value := _read(bob, f"SELECT renamed || '' FROM {SCHEMA}.p")) is not None:
            assert time.monotonic() < deadline, f"the poll never saw the rename: {value!r}"
            time.sleep(0.05)


def test_a_function_made_directly_to_return_identifiers_is_refused_once_polled(
        polled: GatewayProcess, direct: Conn, clear_name: str) -> None:
    with _connect(polled) as bob:
        bob.execute(f"SET search_path = {SCHEMA}, public")
        assert _read(bob, "SELECT lower('X')") == "x"  # the built-in is allowed
        direct.execute(f"CREATE FUNCTION {SCHEMA}.lower(int) RETURNS text LANGUAGE sql STABLE "
                       "AS $$SELECT last_name FROM public.patients WHERE id = $1$$")
        deadline = time.monotonic() + POLL_WAIT_S
        while (value := _read(bob, "SELECT lower(7)")) is not None:  # the poll's window
            assert time.monotonic() < deadline, f"never refused, showed {value!r}"
            time.sleep(0.05)
        assert _read(bob, "SELECT lower('X')") is None  # shared with a user function now


# ---------------------------------------------------------------- through the gateway

def test_a_view_replaced_in_an_open_transaction_then_committed(
        pg_cluster: ClusterInfo, unpolled: GatewayProcess, direct: Conn, clear_name: str
) -> None:
    _view(direct, "h", HARMLESS, pg_cluster.service_user)
    with (_connect(unpolled) as bob, _connect(unpolled) as other,
          _connect(unpolled, "oncall") as dba):
        before = _read(bob, f"SELECT who FROM {SCHEMA}.h ORDER BY 1 LIMIT 1")
        assert before not in (None, REDACTED)
        dba.execute("BEGIN")
        dba.execute(f"CREATE OR REPLACE VIEW {SCHEMA}.h AS {WHO}")
        # not committed (reading h would wait for its lock): other masked reads go on
        assert _read(bob, "SELECT last_name FROM patients WHERE id = 7") == REDACTED
        dba.execute("COMMIT")
        assert _read(bob, f"SELECT who FROM {SCHEMA}.h") == REDACTED
        assert _read(other, f"SELECT who FROM {SCHEMA}.h") == REDACTED
        assert _read(other, f"SELECT who || '' FROM {SCHEMA}.h") is None  # derived: refused


def test_a_column_renamed_through_the_gateway(
        pg_cluster: ClusterInfo, unpolled: GatewayProcess, direct: Conn, clear_name: str
) -> None:
    _view(direct, "p", WHO, pg_cluster.service_user)
    with _connect(unpolled) as bob, _connect(unpolled, "oncall") as dba:
        assert _read(bob, f"SELECT who || '' FROM {SCHEMA}.p") is None
        dba.execute(f"ALTER VIEW {SCHEMA}.p RENAME COLUMN who TO renamed")
        assert _read(bob, f"SELECT renamed || '' FROM {SCHEMA}.p") is None  # still derived
        assert _read(bob, f"SELECT renamed FROM {SCHEMA}.p") == REDACTED


def test_a_function_made_in_an_open_transaction_to_return_identifiers(
        unpolled: GatewayProcess, direct: Conn, clear_name: str) -> None:
    with _connect(unpolled) as bob:
        bob.execute(f"SET search_path = {SCHEMA}, public")
        bob.execute("BEGIN")
        bob.execute(f"CREATE FUNCTION {SCHEMA}.lower(int) RETURNS text LANGUAGE sql STABLE "
                    "AS $$SELECT last_name FROM public.patients WHERE id = $1$$")
        assert _read(bob, "SELECT lower(7)") is None  # uncommitted DDL: refused
        bob.execute("ROLLBACK")  # the refusal failed the transaction
        bob.execute("BEGIN")
        bob.execute(f"CREATE FUNCTION {SCHEMA}.lower(int) RETURNS text LANGUAGE sql STABLE "
                    "AS $$SELECT last_name FROM public.patients WHERE id = $1$$")
        bob.execute("COMMIT")
        assert _read(bob, "SELECT lower(7)") is None  # off the allow-list now
        assert _read(bob, "SELECT lower('X')") is None  # the name is shared


def test_ddl_then_a_read_in_one_query_string(
        unpolled: GatewayProcess, direct: Conn, clear_name: str) -> None:
    with _connect(unpolled) as bob:
        sql = (f"CREATE VIEW {SCHEMA}.q AS {WHO}; SELECT who FROM {SCHEMA}.q")
        assert _read(bob, sql) is None  # the read ran before the view was committed
