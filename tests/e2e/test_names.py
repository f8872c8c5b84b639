"""One namespace for prepared statements and portals, as the server has, through the gateway.

A statement prepared with the protocol (asyncpg's ``prepare(name=…)``) runs with SQL
``EXECUTE``; a portal bound with the protocol (an asyncpg cursor) is moved with SQL ``MOVE`` and
read with ``FETCH``; each use is decided on what the name really runs (the clinic policy).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import CLINIC_POLICY, IDENTITIES, GatewayProcess


@pytest.fixture(scope="module")
def clinic(pg_cluster: ClusterInfo, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("names"), pg_cluster,
                             {"policies": [str(CLINIC_POLICY)]},
                             env={"PHIGATE_TEST_NOW": "2024-06-04T10:00:00-04:00"}).start()
    yield process
    process.stop()


async def _connect(gateway: GatewayProcess, user: str = "alice") -> asyncpg.Connection:
    return await asyncpg.connect(host="127.0.0.1", port=gateway.port, user=user,
                                 password=IDENTITIES[user].password, database="clinic",
                                 ssl=False)


def test_protocol_prepared_statement_runs_with_sql_execute(clinic: GatewayProcess) -> None:
    async def scenario() -> None:
        con = await _connect(clinic)
        try:
            ps = await con.prepare("SELECT mrn FROM patients WHERE id = $1", name="by_id")
            assert ps.get_name() == "by_id"
            assert await con.fetchval("EXECUTE by_id(7)") == await ps.fetchval(7)
            with pytest.raises(asyncpg.DuplicatePreparedStatementError):
                await con.prepare("SELECT 1", name="by_id")
            await con.execute("DEALLOCATE by_id")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="unknown-name"):
                await con.fetchval("EXECUTE by_id(7)")
        finally:
            await con.close()

    asyncio.run(scenario())


def test_sql_execute_is_decided_on_the_protocol_statement(clinic: GatewayProcess) -> None:
    async def scenario() -> None:
        con = await _connect(clinic, "bob")  # engineers may not read PHI
        try:
            # An allowed protocol Parse runs through SQL EXECUTE...
            kept = await con.prepare("SELECT 41 + $1::int", name="harmless")
            assert await con.fetchval("EXECUTE harmless(1)") == 42
            # ...and one that is denied never becomes a name SQL could run.
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await con.prepare("SELECT mrn FROM patients WHERE id = $1", name="phi")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="unknown-name"):
                await con.fetchval("EXECUTE phi(1)")
            assert kept.get_name() == "harmless"  # asyncpg closes what nothing references
        finally:
            await con.close()

    asyncio.run(scenario())


def test_protocol_portal_is_read_with_sql_move_and_fetch(clinic: GatewayProcess) -> None:
    async def scenario() -> None:
        con = await _connect(clinic)
        try:
            st = await con.prepare("SELECT id FROM patients WHERE id <= 20 ORDER BY id")
            async with con.transaction():
                cur = await st.cursor()
                assert [r["id"] for r in await cur.fetch(2)] == [1, 2]
                assert await cur.forward(5) == 5  # MOVE FORWARD 5 FROM "<portal>"
                assert (await cur.fetchrow())["id"] == 8
        finally:
            await con.close()

    asyncio.run(scenario())
