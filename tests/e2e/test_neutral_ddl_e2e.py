"""DDL that changes nothing the policy reads from the catalog holds no session, and DDL that may
is still followed: through a real ``phigate serve``, an insider who may run DDL trying to reach
PHI past the bulk-export block with each shape (``policies/catalog_effects.py``).

Whether DDL through the gateway read the catalog again is seen with a canary: a view made
directly on the database over ``departments``, looked up by a session, then replaced directly
over ``patients`` with the poll off. Until something reads the catalog again the gateway still
knows the harmless definition; a re-read makes it PHI. ``TRUNCATE``, an index on plain columns,
``DROP INDEX`` and ``COMMENT`` leave the canary harmless; everything else (and those shapes
when user code runs with them: a trigger in the database, an event trigger) makes it PHI.
README "Policies" states the guarantee.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import psycopg
import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import CLINIC_POLICY, GatewayProcess

pytestmark = pytest.mark.usefixtures("service_may_create")

Conn = psycopg.Connection[tuple[object, ...]]
HARMLESS = "SELECT name::text AS mrn FROM departments"
OVER_PHI = "SELECT mrn FROM patients"
SCHEMA = "ddl_neutral"
READS_PHI = (f"CREATE FUNCTION {SCHEMA}.peek(int) RETURNS int IMMUTABLE LANGUAGE sql "
             "AS 'SELECT $1 + length(max(mrn)) FROM patients'")


def _error(conn: Conn, sql: str) -> tuple[bytes | None, str]:
    result = conn.pgconn.exec_(sql.encode())
    message = result.error_field(psycopg.pq.DiagnosticField.MESSAGE_PRIMARY) or b""
    return result.error_field(psycopg.pq.DiagnosticField.SQLSTATE), message.decode()


def _refused(conn: Conn, sql: str) -> bool:
    """Refused by the gateway's policy (not by the database)."""
    sqlstate, message = _error(conn, sql)
    return sqlstate == b"42501" and message.startswith("phigate:")


def _direct(cluster: ClusterInfo, sql: str) -> None:
    cluster.cluster.execute(sql, dbname=cluster.database)


class Canary:
    """Views the gateway knows as harmless that are PHI on the database: one per check."""

    def __init__(self, cluster: ClusterInfo, alice: Conn) -> None:
        self.cluster = cluster
        self.alice = alice
        self.numbers = itertools.count()

    def arm(self) -> str:
        name = f"{SCHEMA}.canary{next(self.numbers)}"
        _direct(self.cluster, f"CREATE VIEW {name} AS {HARMLESS};"
                              f"GRANT SELECT ON {name} TO {self.cluster.service_user}")
        assert _error(self.alice, f"SELECT * FROM {name}")[0] is None  # looked up: harmless
        _direct(self.cluster, f"CREATE OR REPLACE VIEW {name} AS {OVER_PHI}")  # no poll
        return name

    def read_again(self, name: str) -> bool:
        """Whether the gateway read the catalog since :meth:`arm` (the canary is PHI)."""
        return _refused(self.alice, f"SELECT * FROM {name}")


@pytest.fixture
def gateway(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    return start_gateway({"policies": [str(CLINIC_POLICY)],
                          "limits": {"catalog_poll_interval": 0}})


@pytest.fixture
def dba(gateway: GatewayProcess) -> Iterator[Conn]:
    with psycopg.connect(gateway.dsn("oncall"), autocommit=True,
                         options="-c phigate.reason=INC-16") as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(f"CREATE TABLE {SCHEMA}.t (id serial PRIMARY KEY, a int, b int)")
        conn.execute(f"CREATE INDEX t_b ON {SCHEMA}.t (b)")
        yield conn
        conn.rollback()
        conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")


@pytest.fixture
def canary(gateway: GatewayProcess, pg_cluster: ClusterInfo, dba: Conn) -> Iterator[Canary]:
    with psycopg.connect(gateway.dsn("alice"), autocommit=True) as alice:
        assert _refused(alice, OVER_PHI)  # the bulk block it must not pass
        yield Canary(pg_cluster, alice)


@pytest.fixture
def bob(gateway: GatewayProcess, dba: Conn) -> Iterator[Conn]:
    """An engineer: may write, may not touch PHI (nor call what does)."""
    with psycopg.connect(gateway.dsn("bob"), autocommit=True) as conn:
        yield conn


# ---------------------------------------------------------------- what is not read again

@pytest.mark.parametrize("ddl", [
    "TRUNCATE {s}.t",
    "TRUNCATE {s}.t RESTART IDENTITY",
    "CREATE INDEX ON {s}.t (a, b DESC)",
    "CREATE UNIQUE INDEX ON {s}.t (id) INCLUDE (a)",
    "DROP INDEX {s}.t_b",
    "COMMENT ON TABLE {s}.t IS 'kept'",
    "COMMENT ON COLUMN {s}.t.a IS 'kept'",
    "ANALYZE {s}.t",
    "VACUUM {s}.t",
])
def test_ddl_that_changes_nothing_the_policy_reads_holds_no_one(
        canary: Canary, dba: Conn, ddl: str) -> None:
    name = canary.arm()
    dba.execute(ddl.format(s=SCHEMA))
    assert not canary.read_again(name)  # the stated window of DDL made directly, poll off


def test_inside_a_transaction_it_leaves_the_session_settled(dba: Conn) -> None:
    dba.execute("BEGIN")
    dba.execute(f"TRUNCATE {SCHEMA}.t")
    dba.execute(f"CREATE INDEX ON {SCHEMA}.t (a)")
    assert _error(dba, f"SELECT * FROM {SCHEMA}.t")[0] is None  # reads t, not every PHI table
    dba.execute("ROLLBACK")
    dba.execute("BEGIN")
    dba.execute(f"CREATE TABLE {SCHEMA}.made (x int)")
    assert _refused(dba, f"SELECT * FROM {SCHEMA}.t")  # unsettled: every PHI table, in bulk
    dba.execute("ROLLBACK")


# ---------------------------------------------------------------- what still is

@pytest.mark.parametrize("ddl", [
    "TRUNCATE {s}.t CASCADE",
    "CREATE INDEX ON {s}.t ((a + 1))",
    "CREATE INDEX ON {s}.t (a) WHERE a > 0",
    "DROP INDEX {s}.t_b CASCADE",
    "DROP TABLE {s}.t",
    "CREATE TEMP TABLE scratch (x int)",
    "CREATE TEMP TABLE scratch AS SELECT 1 AS x",
    "ALTER TABLE {s}.t ADD COLUMN c int",
    "COMMENT ON TABLE {s}.t IS 'x'; CREATE TABLE {s}.u ()",
])
def test_ddl_that_may_change_what_the_policy_reads_is_read_again(
        canary: Canary, dba: Conn, ddl: str) -> None:
    name = canary.arm()
    dba.execute(ddl.format(s=SCHEMA))
    assert canary.read_again(name)


def test_truncate_is_read_again_when_the_database_runs_triggers(
        canary: Canary, dba: Conn) -> None:
    """A TRUNCATE trigger's function may run DDL itself; any trigger anywhere counts."""
    dba.execute(f"CREATE TABLE {SCHEMA}.other (x int)")
    dba.execute(f"CREATE FUNCTION {SCHEMA}.noop() RETURNS trigger LANGUAGE plpgsql "
                "AS 'BEGIN RETURN NULL; END'")
    dba.execute(f"CREATE TRIGGER noop AFTER TRUNCATE ON {SCHEMA}.other "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.noop()")
    name = canary.arm()
    dba.execute(f"TRUNCATE {SCHEMA}.t")
    assert canary.read_again(name)
    name = canary.arm()
    dba.execute(f"CREATE INDEX ON {SCHEMA}.t (a)")  # no trigger runs on an index
    assert not canary.read_again(name)


def test_an_event_trigger_makes_every_ddl_read_again(
        canary: Canary, pg_cluster: ClusterInfo, dba: Conn) -> None:
    _direct(pg_cluster, f"CREATE FUNCTION {SCHEMA}.on_ddl() RETURNS event_trigger "
                        "LANGUAGE plpgsql AS 'BEGIN END';"
                        f"CREATE EVENT TRIGGER {SCHEMA}_on_ddl ON ddl_command_end "
                        f"EXECUTE FUNCTION {SCHEMA}.on_ddl()")
    try:
        dba.execute(f"CREATE TABLE {SCHEMA}.seen ()")  # the event trigger is read
        name = canary.arm()
        dba.execute(f"COMMENT ON TABLE {SCHEMA}.t IS 'runs the event trigger'")
        assert canary.read_again(name)
    finally:
        _direct(pg_cluster, f"DROP EVENT TRIGGER {SCHEMA}_on_ddl")


# ---------------------------------------------------------------- PHI past the block

@pytest.mark.parametrize("index", [
    "CREATE INDEX ON {s}.t ({s}.peek(a))",
    "CREATE INDEX ON {s}.t (a) WHERE {s}.peek(a) > 0",
])
def test_an_index_whose_expression_reads_phi_runs_it_on_every_write(
        dba: Conn, bob: Conn, index: str) -> None:
    dba.execute(READS_PHI)
    assert _error(bob, f"INSERT INTO {SCHEMA}.t (a) VALUES (1)")[0] is None
    dba.execute(index.format(s=SCHEMA))
    assert _refused(bob, f"INSERT INTO {SCHEMA}.t (a) VALUES (2)")


def test_a_temporary_table_whose_default_reads_phi_is_followed(dba: Conn) -> None:
    """Were a temporary table not read again, its default would run unseen on INSERT."""
    dba.execute(f"CREATE FUNCTION {SCHEMA}.mrns() RETURNS text LANGUAGE sql "
                "AS $$SELECT string_agg(mrn, ',') FROM patients$$")
    assert _refused(dba, f"CREATE TEMP TABLE loot (m text DEFAULT {SCHEMA}.mrns())")  # bulk
    assert _refused(dba, "CREATE TEMP TABLE loot AS SELECT string_agg(mrn, ',') FROM patients")
    dba.execute(READS_PHI)
    dba.execute(f"CREATE TEMP TABLE kept (n int, m int DEFAULT {SCHEMA}.peek(1))")
    assert _refused(dba, "INSERT INTO kept (n) VALUES (1)")  # PHI folded into kept: a copy
