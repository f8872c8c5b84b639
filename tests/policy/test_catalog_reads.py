"""The catalog's fingerprint and re-reads: what the poll notices, and what statements wait for.

The fingerprint is read from a real PostgreSQL: each change below alters what the policy
follows on a table's reads or writes without touching ``pg_class`` or ``pg_proc`` (a second
trigger, a default, a check constraint, a row-security policy), so a fingerprint of those two
alone would miss it when made directly on the database. The re-read ordering uses a scripted
stand-in for the upstream's answers, so that the slow volatility read can be held exactly.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from gateway.policy import catalog as catalog_module
from gateway.policy.catalog import ViewCatalog
from gateway.settings.config import DatabaseSettings
from policies.functions import FUNCTIONS_SQL
from policies.functions import NOTHING_KNOWN as NO_FUNCTIONS
from policies.readonly import NOTHING_KNOWN, VOLATILITY_SQL
from policies.views import FINGERPRINT_SQL
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
        """, dbname=pg_cluster.database)
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        yield conn
    pg_cluster.cluster.execute(f"DROP SCHEMA {SCHEMA} CASCADE", dbname=pg_cluster.database)


def _fingerprint(conn: psycopg.Connection[tuple[object, ...]]) -> object:
    row = conn.execute(FINGERPRINT_SQL).fetchone()
    assert row is not None
    return row[0]


@pytest.mark.parametrize("change", [
    "CREATE TRIGGER second AFTER UPDATE ON {s}.notes FOR EACH ROW EXECUTE FUNCTION {s}.touch()",
    "ALTER TABLE {s}.notes ALTER COLUMN body SET DEFAULT 'x'",
    "ALTER TABLE {s}.notes ADD CONSTRAINT short CHECK (length(body) < 100)",
    "CREATE POLICY mine ON {s}.notes USING (id > 0)",
])
def test_what_runs_on_a_tables_reads_and_writes_changes_the_fingerprint(
        pg_cluster: ClusterInfo, conn: psycopg.Connection[tuple[object, ...]],
        change: str) -> None:
    before = _fingerprint(conn)
    assert _fingerprint(conn) == before  # stable while nothing changes
    pg_cluster.cluster.execute(change.format(s=SCHEMA), dbname=pg_cluster.database)
    assert _fingerprint(conn) != before


async def test_statements_wait_for_the_functions_not_for_the_slow_volatility_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    volatility_may_answer = asyncio.Event()

    async def answer(db: DatabaseSettings, dbname: str, sql: str, max_message_size: int
                     ) -> list[tuple[str | None, ...]]:
        if sql == VOLATILITY_SQL:
            await volatility_may_answer.wait()
            return []
        assert sql == FUNCTIONS_SQL
        return []

    monkeypatch.setattr(catalog_module, "query_rows", answer)
    reader = ViewCatalog(1 << 20)
    db = DatabaseSettings(name="clinic", host="127.0.0.1", port=5432, dbname="clinic", user="svc",
                          password=None)
    ref = reader.volatility(db, "clinic")
    await asyncio.wait_for(reader.functions_ready(db, "clinic"), 5)
    assert ref.functions is not NO_FUNCTIONS  # read: table rules and triggers are followed
    assert ref.current is NOTHING_KNOWN  # still reading: nothing is proved read-only yet
    volatility_may_answer.set()
    await asyncio.wait_for(reader.ready(db, "clinic"), 5)  # a session's start waits for both
    assert ref.current is not NOTHING_KNOWN
