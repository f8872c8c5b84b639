"""Side queries on kept connections (gateway/proxy/sidequery.py), against the suite's real
PostgreSQL: a connection is reused only when it answered cleanly outside a transaction, one
the server ended while it waited is replaced, and an unused one is closed after IDLE_S."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.proxy import sidequery
from gateway.proxy.sidequery import SideQueryFailed, side_query
from gateway.settings.config import DatabaseSettings, Secret
from tests.conftest import ClusterInfo

APPLICATION = "phigate/side-test"
PID = "SELECT pg_backend_pid()"


@pytest.fixture
async def db(pg_cluster: ClusterInfo) -> AsyncIterator[DatabaseSettings]:
    yield DatabaseSettings(name="clinic", host=pg_cluster.host, port=pg_cluster.port,
                           dbname=pg_cluster.database, user=pg_cluster.service_user,
                           password=Secret(pg_cluster.service_password))
    sidequery.close_kept()
    await asyncio.sleep(0)  # the transports' close callbacks


async def _pid(db: DatabaseSettings, reuse: bool = True) -> str | None:
    rows = await side_query(db, db.dbname or "", PID, 1 << 20, application=APPLICATION,
                            reuse=reuse)
    return rows[0][0]


def _open(cluster: ClusterInfo) -> int:
    return int(cluster.cluster.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
        f"'{APPLICATION}'", dbname=cluster.database).strip())


async def test_a_clean_connection_is_kept_for_the_next_query(db: DatabaseSettings) -> None:
    first = await _pid(db)
    assert await _pid(db) == first
    assert await _pid(db, reuse=False) != first  # without reuse, a connection of its own


async def test_one_that_failed_or_is_in_a_transaction_is_not(db: DatabaseSettings) -> None:
    first = await _pid(db)
    with pytest.raises(SideQueryFailed):
        await side_query(db, db.dbname or "", "SELECT 1/0", 1 << 20, application=APPLICATION,
                         reuse=True)
    second = await _pid(db)
    assert second != first  # the kept one answered the failing query and was closed
    rows = await side_query(db, db.dbname or "", f"BEGIN; {PID}", 1 << 20,
                            application=APPLICATION, reuse=True)
    assert rows[0][0] == second
    assert await _pid(db) != second  # left in a transaction: closed


async def test_one_the_server_ended_while_kept_is_replaced(
        db: DatabaseSettings, pg_cluster: ClusterInfo) -> None:
    first = await _pid(db)
    pg_cluster.cluster.execute(f"SELECT pg_terminate_backend({first})",
                               dbname=pg_cluster.database)
    await asyncio.sleep(0.2)  # the FATAL and the close reach the kept socket
    second = await _pid(db)
    assert second is not None and second != first


async def test_an_unused_connection_is_closed(
        db: DatabaseSettings, pg_cluster: ClusterInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sidequery, "IDLE_S", 0.1)
    await asyncio.gather(_pid(db), _pid(db), _pid(db))  # three at once: two are kept
    kept = [e for key, entries in sidequery._kept.items() if key[4] == APPLICATION
            for e in entries]
    assert len(kept) == sidequery.MAX_IDLE
    for _ in range(50):
        await asyncio.sleep(0.1)
        if _open(pg_cluster) == 0:
            break
    assert _open(pg_cluster) == 0
