"""Issue 18 through the gateway: views that refer to each other, long chains, the step budget.

Real psql against ``phigate serve``: the cyclic views reach PostgreSQL, which raises its own
"infinite recursion detected in rules"; a second session answers before, during and after; a
statement past ``limits.policy_steps`` is refused (54001) and journaled; SIGTERM still drains.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import GatewayProcess, psql
from tests.e2e.test_journal_e2e import entries

pytestmark = pytest.mark.usefixtures("service_may_create")

CYCLE = """\
CREATE SCHEMA {schema};
SET search_path = {schema};
create table t1(a int);
create view v2 as select * from t1;
create view v3 as select * from v2;
create or replace view v2 as select * from v3;
select * from v2;
BEGIN;
LOCK TABLE v2 IN EXCLUSIVE MODE;
ROLLBACK;
create view v7 as select * from v2;
select * from v7;
"""


async def _second_session(gateway: GatewayProcess, rounds: int) -> list[str]:
    conn = await asyncpg.connect(host="127.0.0.1", port=gateway.port, user="bob",
                                 password="bob-battery-staple", database="clinic", ssl=False)
    try:
        answers = []
        for _ in range(rounds):
            answers.append(await conn.fetchval("SELECT 'alive'"))
            await asyncio.sleep(0.05)
        return answers
    finally:
        await conn.close()


async def test_cyclic_views_get_postgres_error_and_others_keep_answering(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway()
    watcher = asyncio.create_task(_second_session(gateway, 40), name="second-session")
    script = CYCLE.format(schema="issue18_cycle")
    result = await asyncio.to_thread(psql, gateway, args=("-v", "ON_ERROR_STOP=0"),
                                     stdin=script, user="bob", timeout=30)
    # PostgreSQL 15 raises it for both SELECTs; its LOCK of a cyclic view just locks.
    assert result.stderr.count("infinite recursion detected in rules for relation") == 2, \
        result.stderr
    assert await watcher == ["alive"] * 40
    assert psql(gateway, "DROP SCHEMA issue18_cycle CASCADE", user="bob").returncode == 0
    assert psql(gateway, "SELECT 'after'", user="alice").stdout.strip() == "after"
    assert gateway.stop() == 0  # SIGTERM drains and exits cleanly
    outcomes = [o for o in entries(gateway, "--type", "outcome")
                if o.get("sqlstate") == "42P17"]
    assert len(outcomes) == 2  # each cyclic statement reached PostgreSQL and has its outcome
    locks = [o for o in entries(gateway, "--type", "outcome") if o.get("tags") == ["LOCK TABLE"]]
    assert len(locks) == 1 and locks[0]["sqlstate"] is None


def test_a_statement_past_the_step_budget_is_refused_and_journaled(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo) -> None:
    views = "".join(f"CREATE VIEW c{i} AS SELECT * FROM c{i - 1};\n" for i in range(1, 21))
    pg_cluster.cluster.execute(  # created directly: through the gateway c13 would be refused
        "CREATE SCHEMA issue18_chain; SET search_path = issue18_chain;\n"
        "CREATE TABLE c0 (a int);\n" + views +
        f"GRANT USAGE ON SCHEMA issue18_chain TO {pg_cluster.service_user};\n"
        f"GRANT SELECT ON ALL TABLES IN SCHEMA issue18_chain TO {pg_cluster.service_user};\n",
        dbname=pg_cluster.database)
    gateway = start_gateway({"limits": {"policy_steps": 25}})
    try:
        near = psql(gateway, "SELECT * FROM issue18_chain.c5", user="bob")
        assert near.returncode == 0, near.stderr
        far = psql(gateway, user="bob", stdin="SELECT * FROM issue18_chain.c20;\n",
                   args=("-v", "VERBOSITY=verbose"))
        assert far.returncode != 0
        assert "54001" in far.stderr and "too-complex" in far.stderr, far.stderr
        assert "limits.policy_steps" in far.stderr
    finally:
        pg_cluster.cluster.execute("DROP SCHEMA issue18_chain CASCADE", dbname=pg_cluster.database)
    assert gateway.stop() == 0
    refused = [s for s in entries(gateway, "--type", "statement")
               if s["sql"].startswith("SELECT * FROM issue18_chain.c20")]
    assert refused and refused[0]["decision"] == "deny"
    assert refused[0]["rules"] == ["too-complex"]
    assert refused[0]["refused"]["sqlstate"] == "54001"
