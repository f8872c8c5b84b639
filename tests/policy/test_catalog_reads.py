"""The catalog's fingerprint and re-reads: what moves which part, and what is read again.

The fingerprint is read from a real PostgreSQL: each change that alters what the policy
follows on a table's reads or writes moves the functions part (a second trigger, a default, a
check constraint, a row-security policy, an index expression, a renamed table with a trigger),
and DDL that changes none of it moves no part or only the relations (TRUNCATE, a plain index,
ANALYZE, COMMENT, a new table). Each read reports the part of the state it read, equal to the
snapshot's for the same state. The re-read orderings use a scripted stand-in for the
upstream's answers, so that a read can be held exactly.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from gateway.policy.catalog import CatalogUnavailable, VolatilityRef
from gateway.policy.function_reads import FUNCTIONS, VOLATILITY, FunctionReads
from policies.fingerprint import FINGERPRINT_SQL, SEPARATOR, Fingerprint
from policies.functions import FUNCTIONS_SQL
from policies.functions import NOTHING_KNOWN as NO_FUNCTIONS
from policies.readonly import BUILTINS_SQL, NOTHING_KNOWN, VOLATILITY_SQL
from policies.views import SNAPSHOT_SQL
from tests.conftest import ClusterInfo

SCHEMA = f"fp_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def conn(pg_cluster: ClusterInfo) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """The service role's connection (what the gateway polls with); DDL runs as the owner."""
    pg_cluster.cluster.execute(f"""
            CREATE SCHEMA {SCHEMA};
            CREATE TABLE {SCHEMA}.notes (id int, body text);
            CREATE FUNCTION {SCHEMA}.touch() RETURNS trigger LANGUAGE plpgsql
                AS 'BEGIN RETURN NEW; END';
            CREATE TRIGGER first AFTER INSERT ON {SCHEMA}.notes
                FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.touch();
            CREATE TABLE {SCHEMA}.logged (id int);
            CREATE TRIGGER logs AFTER INSERT ON {SCHEMA}.logged
                FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.touch();
            CREATE FUNCTION {SCHEMA}.same(int) RETURNS int IMMUTABLE LANGUAGE sql
                AS 'SELECT $1';
        """, dbname=pg_cluster.database)
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        yield conn
    pg_cluster.cluster.execute(f"DROP SCHEMA {SCHEMA} CASCADE", dbname=pg_cluster.database)


def _parts(conn: psycopg.Connection[tuple[object, ...]]) -> Fingerprint:
    row = conn.execute(FINGERPRINT_SQL).fetchone()
    assert row is not None
    return Fingerprint.parse(str(row[0]))


def _found(conn: psycopg.Connection[tuple[object, ...]], sql: str, column: int) -> str:
    return next(str(r[column]) for r in conn.execute(sql).fetchall() if r[0] == "fingerprint")


@pytest.mark.parametrize("change", [
    "CREATE TRIGGER second AFTER UPDATE ON {s}.notes FOR EACH ROW EXECUTE FUNCTION {s}.touch()",
    "ALTER TABLE {s}.notes ALTER COLUMN body SET DEFAULT 'x'",
    "ALTER TABLE {s}.notes ADD CONSTRAINT short CHECK (length(body) < 100)",
    "CREATE POLICY mine ON {s}.notes USING (id > 0)",
    "CREATE INDEX ON {s}.notes ({s}.same(id))",
    "CREATE INDEX ON {s}.notes (body) WHERE {s}.same(id) > 0",
    "ALTER TABLE {s}.logged RENAME TO logged_too",
    "CREATE FUNCTION {s}.more() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE OR REPLACE FUNCTION {s}.same(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 2'",
])
def test_what_runs_on_a_tables_reads_and_writes_moves_the_functions_part(
        pg_cluster: ClusterInfo, conn: psycopg.Connection[tuple[object, ...]],
        change: str) -> None:
    before = _parts(conn)
    assert _parts(conn) == before  # stable while nothing changes
    pg_cluster.cluster.execute(change.format(s=SCHEMA), dbname=pg_cluster.database)
    assert _parts(conn).functions != before.functions


@pytest.mark.parametrize(("change", "new_relation"), [
    ("TRUNCATE {s}.notes", False),
    ("CREATE INDEX ON {s}.notes (body, id)", False),
    ("ANALYZE {s}.notes", False),
    ("VACUUM {s}.notes", False),
    ("COMMENT ON TABLE {s}.notes IS 'kept'", False),
    ("GRANT SELECT ON {s}.notes TO PUBLIC", False),
    ("ALTER TABLE {s}.notes ADD COLUMN extra int", True),  # masking maps columns by name
    ("ALTER TABLE {s}.notes RENAME COLUMN extra TO more", True),
    ("CREATE TABLE {s}.plain (x int)", True),
])
def test_ddl_that_changes_nothing_the_functions_follow_leaves_their_part(
        pg_cluster: ClusterInfo, conn: psycopg.Connection[tuple[object, ...]],
        change: str, new_relation: bool) -> None:
    before = _parts(conn)
    pg_cluster.cluster.execute(change.format(s=SCHEMA), dbname=pg_cluster.database)
    after = _parts(conn)
    assert (after.functions, after.builtins) == (before.functions, before.builtins)
    assert (after.relations != before.relations) is new_relation


def test_a_temporary_table_moves_only_the_relations(
        pg_cluster: ClusterInfo, conn: psycopg.Connection[tuple[object, ...]]) -> None:
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as other:
        other.execute("CREATE TEMP TABLE scratch_warm (x int)")  # its schema, once per backend
        before = _parts(conn)
        other.execute("CREATE TEMP TABLE scratch (x int)")
        after = _parts(conn)
        other.execute("DISCARD TEMP")  # not left for the backend to drop after the next test
    assert after.functions == before.functions and after.relations != before.relations


def test_each_read_reports_the_part_of_the_state_it_read(
        conn: psycopg.Connection[tuple[object, ...]]) -> None:
    parts = _parts(conn)
    assert _found(conn, SNAPSHOT_SQL, 1) == parts.text
    assert _found(conn, FUNCTIONS_SQL, 5) == parts.functions
    assert _found(conn, VOLATILITY_SQL, 1) == f"{parts.relations}{SEPARATOR}{parts.functions}"
    assert _found(conn, BUILTINS_SQL, 1) == parts.builtins


# ------------------------------------------------------------- the reads, scripted

READS = {BUILTINS_SQL: "builtins", FUNCTIONS_SQL: FUNCTIONS, VOLATILITY_SQL: VOLATILITY}


class Upstream:
    """Answers the function reads as of the state (``parts``) when each read starts; a read
    named in ``held`` waits for its event."""

    def __init__(self) -> None:
        self.parts = Fingerprint("r1", "f1", "b1")
        self.asked: list[str] = []
        self.held: dict[str, asyncio.Event] = {}

    async def query(self, sql: str) -> list[tuple[str | None, ...]]:
        read = READS[sql]
        self.asked.append(read)
        parts = self.parts
        if read in self.held:
            await self.held[read].wait()
        if read == "builtins":
            return [("fingerprint", parts.builtins, "", ""), ("f", "pg_catalog", "lower", "i")]
        if read == FUNCTIONS:
            return [("fingerprint", "", "", "", "", parts.functions),
                    ("f", "public", "leak", "f", "plpgsql", "BEGIN END")]
        return [("fingerprint", f"{parts.relations}{SEPARATOR}{parts.functions}", "", ""),
                ("r", "public", "notes", "r")]


def reads(upstream: Upstream) -> FunctionReads:
    return FunctionReads(VolatilityRef(), upstream.query, "clinic/clinic")


async def test_statements_wait_for_the_functions_not_for_the_volatility_read() -> None:
    upstream = Upstream()
    upstream.held[VOLATILITY] = asyncio.Event()
    shared = reads(upstream)
    shared.start()
    await asyncio.wait_for(shared.wait(FUNCTIONS), 5)
    assert shared.ref.functions.kinds("leak") == frozenset("f")  # read: rules, triggers too
    assert shared.ref.current is NOTHING_KNOWN  # still reading: nothing proved read-only yet
    upstream.held[VOLATILITY].set()
    await asyncio.wait_for(shared.wait(FUNCTIONS, VOLATILITY), 5)  # a session's start
    assert "notes" in shared.ref.current.relations


async def test_only_what_a_change_moved_is_read_again_and_the_builtins_once() -> None:
    upstream = Upstream()
    shared = reads(upstream)
    shared.start()
    await shared.wait(FUNCTIONS, VOLATILITY)
    functions, volatility = shared.ref.functions, shared.ref.current
    assert sorted(upstream.asked) == ["builtins", FUNCTIONS, VOLATILITY]
    shared.follow(upstream.parts)  # the snapshot found the state the reads found
    await shared.wait(FUNCTIONS, VOLATILITY)
    assert len(upstream.asked) == 3 and shared.ref.functions is functions
    upstream.parts = Fingerprint("r2", "f1", "b1")  # CREATE TABLE: the relations only
    shared.follow(upstream.parts)
    assert shared.ref.current is NOTHING_KNOWN  # forgotten at once
    await shared.wait(FUNCTIONS, VOLATILITY)
    assert upstream.asked[3:] == [VOLATILITY] and shared.ref.functions is functions
    assert shared.ref.current is not volatility
    upstream.parts = Fingerprint("r2", "f2", "b1")  # a trigger: the functions and volatility
    shared.follow(upstream.parts)
    assert shared.ref.functions is NO_FUNCTIONS
    await shared.wait(FUNCTIONS, VOLATILITY)
    assert sorted(upstream.asked[4:]) == [FUNCTIONS, VOLATILITY]
    assert shared.ref.functions.known
    upstream.parts = Fingerprint("r2", "f2", "b2")  # a superuser changed a built-in
    shared.follow(upstream.parts)
    await shared.wait(FUNCTIONS, VOLATILITY)
    assert sorted(upstream.asked[6:]) == ["builtins", FUNCTIONS, VOLATILITY]


async def test_a_read_begun_before_a_change_is_read_again() -> None:
    upstream = Upstream()
    upstream.held[FUNCTIONS] = asyncio.Event()
    shared = reads(upstream)
    shared.start()
    await asyncio.sleep(0.01)  # the functions read is under way, as of f1
    upstream.parts = Fingerprint("r1", "f2", "b1")
    shared.follow(upstream.parts)
    upstream.held[FUNCTIONS].set()
    await shared.wait(FUNCTIONS)  # waits for the second read too
    assert upstream.asked.count(FUNCTIONS) == 2 and shared.ref.functions.known
    upstream.held.clear()
    shared.follow(upstream.parts)
    await shared.wait(FUNCTIONS, VOLATILITY)
    assert upstream.asked.count(FUNCTIONS) == 2  # what it read is current


async def test_a_failed_read_stays_forgotten_and_is_tried_at_the_next_follow() -> None:
    upstream = Upstream()
    failing = True

    async def query(sql: str) -> list[tuple[str | None, ...]]:
        if failing and sql == FUNCTIONS_SQL:
            raise CatalogUnavailable("phigate: lock timeout")
        return await upstream.query(sql)

    shared = FunctionReads(VolatilityRef(), query, "clinic/clinic")
    shared.start()
    await shared.wait(FUNCTIONS, VOLATILITY)
    assert shared.ref.functions is NO_FUNCTIONS  # every user function opaque
    failing = False
    shared.follow(upstream.parts)  # the same fingerprint: still read, nothing was
    await shared.wait(FUNCTIONS)
    assert shared.ref.functions.known
