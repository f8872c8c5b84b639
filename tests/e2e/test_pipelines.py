"""Pipelines through the gateway: statements behind each other in one client batch.

asyncpg's ``executemany`` sends every Bind/Execute before one Sync. The gateway decides
the statements behind a pipelined one while its journal entry is written, so their
entries share writes, and forwards each only once its own entry is durable. Against
``phigate serve`` (subprocess) and the real PostgreSQL; journal faults are real
(``chattr +i`` on the live segment).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from gateway.journal.writer import RETRY_AFTER_S
from tests.e2e.harness import IDENTITIES, GatewayProcess, phigate_json
from tests.e2e.test_alerts_metrics import scrape, value, with_metrics
from tests.e2e.test_held_answers import failing_journal

ROWS = 500


async def _connect(gateway: GatewayProcess) -> asyncpg.Connection:
    return await asyncpg.connect(host="127.0.0.1", port=gateway.port, user="alice",
                                 password=IDENTITIES["alice"].password, database="clinic",
                                 ssl=False)


async def test_a_pipeline_is_journaled_in_shared_writes_each_entry_before_its_statement(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway(with_metrics({}))
    conn = await _connect(gateway)
    try:
        await conn.execute("CREATE TEMP TABLE piped (a text, b int)")
        before = scrape(gateway)
        await conn.executemany("INSERT INTO piped VALUES ($1, $2)",
                               [("x", n) for n in range(ROWS)])
        after = scrape(gateway)
        assert await conn.fetchval("SELECT count(*) FROM piped") == ROWS
    finally:
        await conn.close()
    def delta(name: str) -> float:
        return value(after, name) - value(before, name)

    # One write per statement when each waited for its own entry before the next was read.
    assert delta("phigate_journal_batch_size_count") < ROWS / 10
    assert delta("phigate_journal_append_seconds_count") == ROWS
    inserts = [s for s in phigate_json(gateway, "--type", "statement")
               if s["sql"].startswith("INSERT INTO piped")]
    assert len(inserts) == ROWS


async def test_a_pipeline_whose_entries_cannot_be_written_runs_nothing(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway()
    conn = await _connect(gateway)
    try:
        await conn.execute("CREATE TEMP TABLE piped (a text, b int)")
        insert = await conn.prepare("INSERT INTO piped VALUES ($1, $2)")
        with failing_journal(gateway):
            try:
                await conn.executemany(insert.get_query(), [("x", n) for n in range(ROWS)])
            except asyncpg.PostgresError as e:
                sqlstate = e.sqlstate
            else:
                sqlstate = None
        assert sqlstate in {"58030", "53100"}
        await asyncio.sleep(2 * RETRY_AFTER_S)  # a broken journal is retried after this
        assert await conn.fetchval("SELECT count(*) FROM piped") == 0
        await conn.executemany(insert.get_query(), [("y", 1), ("y", 2)])  # journal is back
        assert await conn.fetchval("SELECT count(*) FROM piped") == 2
    finally:
        await conn.close()
