"""COPY FROM STDIN cancelled mid-stream: through the gateway exactly as directly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
import psycopg
import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import IDENTITIES, GatewayProcess, phigate_json

ROW = "x" * 1000
Observed = tuple[object, ...]


def _psycopg_cancel(dsn: str) -> Observed:
    """psycopg's cancel() (a CancelRequest) while the COPY's data is still being sent."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE copy_cancel (n int, a text)")
        with pytest.raises(psycopg.errors.QueryCanceled) as caught:
            with conn.cursor().copy("COPY copy_cancel FROM STDIN") as copy:
                for n in range(20000):
                    copy.write_row((n, ROW))
                    if n == 2000:
                        conn.cancel_safe()
        count = conn.execute("SELECT count(*) FROM copy_cancel").fetchone()
        after = conn.execute("SELECT 'usable'").fetchone()
        return (caught.value.sqlstate, count, after, conn.info.transaction_status.name)


async def _asyncpg_cancel(connect: Callable[[], asyncpg.Connection]) -> Observed:
    """asyncpg's task cancellation (CopyFail) while its records are still being sent."""
    conn = await connect()
    try:
        await conn.execute("CREATE TEMP TABLE copy_cancel (n int, a text)")
        started = asyncio.Event()

        async def records() -> AsyncIterator[tuple[int, str]]:
            for n in range(1_000_000):
                if n == 2000:
                    started.set()
                    await asyncio.sleep(0.01)
                yield n, ROW

        task = asyncio.create_task(conn.copy_records_to_table("copy_cancel", records=records()))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return (await conn.fetchval("SELECT count(*) FROM copy_cancel"),
                await conn.fetchval("SELECT 'usable'"), conn.is_in_transaction())
    finally:
        await conn.close()


def test_psycopg_cancel_during_copy_from_stdin(start_gateway: Callable[..., GatewayProcess],
                                               pg_cluster: ClusterInfo) -> None:
    direct = _psycopg_cancel(pg_cluster.dsn())
    assert direct == ("57014", (0,), ("usable",), "IDLE")
    gateway = start_gateway()
    assert _psycopg_cancel(gateway.dsn()) == direct
    deadline = time.monotonic() + 10  # outcomes are appended without blocking the client
    while not (cancelled := [o for o in phigate_json(gateway, "--type", "outcome")
                             if o.get("sqlstate") == "57014"]):
        assert time.monotonic() < deadline, "the cancelled COPY has no outcome"
        time.sleep(0.1)
    assert "canceling statement due to user request" in cancelled[0]["error"]


async def test_asyncpg_cancel_during_copy_from_stdin(gateway: GatewayProcess,
                                                     pg_cluster: ClusterInfo) -> None:
    direct = await _asyncpg_cancel(lambda: asyncpg.connect(pg_cluster.dsn(), ssl=False))
    assert direct == (0, "usable", False)
    through = await _asyncpg_cancel(lambda: asyncpg.connect(
        host="127.0.0.1", port=gateway.port, user="alice",
        password=IDENTITIES["alice"].password, database="clinic", ssl=False))
    assert through == direct
