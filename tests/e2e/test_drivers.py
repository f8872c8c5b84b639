"""asyncpg, pg8000 and psycopg 3 through the gateway, each in its own protocol style."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import uuid

import asyncpg
import pg8000.native
import psycopg
import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import IDENTITIES, GatewayProcess


async def connect(gateway: GatewayProcess, user: str = "alice") -> asyncpg.Connection:
    return await asyncpg.connect(host="127.0.0.1", port=gateway.port, user=user,
                                 password=IDENTITIES[user].password, database="clinic",
                                 ssl=False)


async def test_asyncpg_prepared_statements_and_binary_types(gateway: GatewayProcess) -> None:
    conn = await connect(gateway)
    try:
        statement = await conn.prepare("SELECT id, last_name FROM patients WHERE id = $1")
        for patient_id in (1, 2, 3):
            row = await statement.fetchrow(patient_id)
            assert row["id"] == patient_id
        values = await conn.fetchrow(
            "SELECT $1::numeric AS n, $2::date AS d, $3::timestamptz AS t, $4::uuid AS u, "
            "$5::bytea AS b, $6::int[] AS a, $7::jsonb AS j",
            decimal.Decimal("12.345"), dt.date(1980, 2, 29),
            dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC), uuid.UUID(int=7), b"\x00\xff",
            [1, None, 3], '{"k": [1, 2]}')
        assert values["n"] == decimal.Decimal("12.345")
        assert values["d"] == dt.date(1980, 2, 29)
        assert values["u"] == uuid.UUID(int=7)
        assert values["b"] == b"\x00\xff"
        assert values["a"] == [1, None, 3]
        many = await conn.fetch("SELECT id FROM patients ORDER BY id LIMIT 150")
        assert [r["id"] for r in many] == list(range(1, 151))
    finally:
        await conn.close()


async def test_asyncpg_cursor_fetches_a_suspended_portal_in_pieces(
        gateway: GatewayProcess) -> None:
    conn = await connect(gateway)
    try:
        async with conn.transaction():
            cursor = await conn.cursor("SELECT id FROM patients ORDER BY id")
            first = await cursor.fetch(10)
            second = await cursor.fetch(10)
        assert [r["id"] for r in first + second] == list(range(1, 21))
    finally:
        await conn.close()


async def test_asyncpg_copy_records_to_table(gateway: GatewayProcess) -> None:
    conn = await connect(gateway)
    try:
        await conn.execute("CREATE TEMP TABLE readings (n int, label text)")
        result = await conn.copy_records_to_table(
            "readings", records=[(i, f"r{i}") for i in range(1000)])
        assert result == "COPY 1000"
        assert await conn.fetchval("SELECT sum(n) FROM readings") == sum(range(1000))
    finally:
        await conn.close()


async def test_asyncpg_listen_notify_with_matching_pids(gateway: GatewayProcess) -> None:
    listener, notifier = await connect(gateway), await connect(gateway, "bob")
    try:
        received: asyncio.Queue[tuple[int, str, str]] = asyncio.Queue()
        await listener.add_listener(
            "ward_events", lambda _c, pid, channel, payload: received.put_nowait(
                (pid, channel, payload)))
        await notifier.execute("NOTIFY ward_events, 'bed 7 free'")
        pid, channel, payload = await asyncio.wait_for(received.get(), 10)
        assert (channel, payload) == ("ward_events", "bed 7 free")
        # The gateway hands out the upstream's real pid, so it matches what the server says.
        server_pid = await notifier.fetchval("SELECT pg_backend_pid()")
        assert pid == notifier.get_server_pid() == server_pid
    finally:
        await listener.close()
        await notifier.close()


async def test_asyncpg_timeout_cancels_the_upstream_query(gateway: GatewayProcess,
                                                         pg_cluster: ClusterInfo) -> None:
    conn = await connect(gateway)
    try:
        with pytest.raises(asyncio.TimeoutError):
            await conn.execute("SELECT pg_sleep(20)", timeout=0.5)
        # The connection stays usable, and the upstream query was really cancelled.
        assert await conn.fetchval("SELECT 1") == 1
        running = pg_cluster.cluster.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(20)' "
            "AND state = 'active'")
        assert running.strip() == "0"
    finally:
        await conn.close()


def test_pg8000_simple_and_extended(gateway: GatewayProcess) -> None:
    conn = pg8000.native.Connection(user="alice", password=IDENTITIES["alice"].password,
                                    host="127.0.0.1", port=gateway.port, database="clinic")
    try:
        # run() with parameters uses the extended protocol; without, pg8000 still parses.
        assert conn.run("SELECT count(*) FROM patients") == [[200]]
        rows = conn.run("SELECT id, mrn FROM patients WHERE id = ANY(:ids) ORDER BY id",
                        ids=[3, 5])
        assert [r[0] for r in rows] == [3, 5]
        conn.run("CREATE TEMP TABLE notes (body text)")
        conn.run("INSERT INTO notes VALUES (:b)", b="it's fine")
        assert conn.run("SELECT body FROM notes") == [["it's fine"]]
        with pytest.raises(pg8000.native.DatabaseError):
            conn.run("SELECT * FROM no_such_table")
        assert conn.run("SELECT 1") == [[1]]
        assert conn.run("SELECT 1; SELECT 2") == [[1], [2]]  # simple-protocol multi-statement
    finally:
        conn.close()


def test_psycopg_pipeline_mode(gateway: GatewayProcess) -> None:
    with psycopg.connect(gateway.dsn("alice")) as conn:
        with conn.pipeline(), conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE visits (id int, ward text)")
            cur.executemany("INSERT INTO visits VALUES (%s, %s)",
                            [(i, f"ward-{i % 3}") for i in range(50)])
            cur.execute("SELECT count(*), count(DISTINCT ward) FROM visits")
            assert cur.fetchone() == (50, 3)
        with pytest.raises(psycopg.errors.UndefinedTable):
            with conn.pipeline(), conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.execute("SELECT * FROM missing_table")
                cur.execute("SELECT 2")
        conn.rollback()
        assert conn.execute("SELECT 'still usable'").fetchone() == ("still usable",)
        assert conn.execute("SELECT %s::int + 1", (41,), binary=True).fetchone() == (42,)


async def test_two_hundred_concurrent_sessions(gateway: GatewayProcess) -> None:
    async def one(i: int) -> int:
        conn = await connect(gateway, ("alice", "bob")[i % 2])
        try:
            return int(await conn.fetchval("SELECT $1::int * 2", i))
        finally:
            await conn.close()

    results = await asyncio.gather(*(one(i) for i in range(200)))
    assert results == [i * 2 for i in range(200)]
