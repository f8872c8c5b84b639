"""The temporary PostgreSQL cluster and the clinic data set, tested against the real server."""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from gateway.demo import tempcluster
from gateway.demo.demo_data import clinic_counts, clinic_sql
from gateway.demo.tempcluster import ClusterError, TempCluster
from tests.conftest import ClusterInfo

# AuthenticationRequest codes (PostgreSQL protocol v3, message 'R').
AUTH_OK, AUTH_CLEARTEXT, AUTH_MD5, AUTH_SASL = 0, 3, 5, 10
PROTOCOL_V3 = 196608


@asynccontextmanager
async def connect(info: ClusterInfo, user: str, password: str | None,
                  database: str | None = None) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(host=info.host, port=info.port, user=user, password=password,
                                 database=database or info.database, ssl=False)
    try:
        yield conn
    finally:
        await conn.close()


async def auth_request(info: ClusterInfo, user: str) -> tuple[int, bytes]:
    """Send a bare StartupMessage and return the server's first authentication request."""
    reader, writer = await asyncio.open_connection(info.host, info.port)
    try:
        params = b"".join(k + b"\0" + v + b"\0" for k, v in
                          ((b"user", user.encode()), (b"database", info.database.encode())))
        params += b"\0"
        writer.write(struct.pack("!ii", 8 + len(params), PROTOCOL_V3) + params)
        await writer.drain()
        kind, length = struct.unpack("!ci", await reader.readexactly(5))
        body = await reader.readexactly(length - 4)
    finally:
        writer.close()
        await writer.wait_closed()
    assert kind == b"R", body
    return struct.unpack("!i", body[:4])[0], body[4:]


def roles(info: ClusterInfo) -> dict[str, tuple[str, str | None, str, int]]:
    """Role key → (user, password, pg_hba method, expected auth request code)."""
    return {
        "scram": (info.service_user, info.service_password, "scram-sha-256", AUTH_SASL),
        "md5": (info.md5_user, info.md5_password, "md5", AUTH_MD5),
        "password": (info.plain_user, info.plain_password, "password", AUTH_CLEARTEXT),
        "trust": (info.trust_user, None, "trust", AUTH_OK),
    }


ROLE_KEYS = ["scram", "md5", "password", "trust"]


@pytest.mark.parametrize("key", ROLE_KEYS)
async def test_role_authenticates_with_its_method(pg_cluster: ClusterInfo, key: str) -> None:
    user, password, method, code = roles(pg_cluster)[key]
    rules = pg_cluster.cluster.execute(
        "SELECT auth_method FROM pg_hba_file_rules"
        f" WHERE user_name = ARRAY['{user}'] AND address = '127.0.0.1';")
    assert rules.split() == [method]

    got, body = await auth_request(pg_cluster, user)
    assert got == code
    if code == AUTH_SASL:
        assert b"SCRAM-SHA-256" in body

    async with connect(pg_cluster, user, password) as conn:
        assert await conn.fetchval("SELECT current_user") == user
        assert await conn.fetchval("SELECT count(*) FROM patients") == pg_cluster.patients


@pytest.mark.parametrize("key", ["scram", "md5", "password"])
async def test_wrong_password_is_refused(pg_cluster: ClusterInfo, key: str) -> None:
    user, password, _, _ = roles(pg_cluster)[key]
    with pytest.raises(asyncpg.InvalidPasswordError):
        async with connect(pg_cluster, user, f"{password}-wrong"):
            pass


async def test_trust_role_ignores_password(pg_cluster: ClusterInfo) -> None:
    async with connect(pg_cluster, pg_cluster.trust_user, "anything") as conn:
        assert await conn.fetchval("SELECT 1") == 1


def test_md5_role_stores_an_md5_hash(pg_cluster: ClusterInfo) -> None:
    # With a SCRAM verifier the server would silently run SCRAM for an md5 pg_hba line.
    stored = pg_cluster.cluster.execute(
        "SELECT rolname || ' ' || left(rolpassword, 3) FROM pg_authid"
        f" WHERE rolname IN ('{pg_cluster.md5_user}', '{pg_cluster.service_user}')"
        " ORDER BY rolname;")
    assert stored.splitlines() == [f"{pg_cluster.service_user} SCR", f"{pg_cluster.md5_user} md5"]


async def test_demo_counts_match(pg_cluster: ClusterInfo) -> None:
    expected = clinic_counts(pg_cluster.patients)
    async with connect(pg_cluster, pg_cluster.service_user, pg_cluster.service_password) as conn:
        for table in ("departments", "patients", "encounters", "lab_results"):
            got = await conn.fetchval(f"SELECT count(*) FROM {table}")
            assert got == getattr(expected, table), table
        open_encounters = await conn.fetchval(
            "SELECT count(*) FROM encounters WHERE discharged_at IS NULL")
        assert 0 < open_encounters < expected.encounters // 10


@pytest.mark.parametrize("patients", [1, 7, 40])
def test_sql_row_counts_match_clinic_counts(patients: int) -> None:
    sql = clinic_sql(patients=patients)
    blocks = dict(re.findall(r"^COPY (\w+) .*? FROM STDIN;\n(.*?)^\\\.$", sql, re.M | re.S))
    rows = {table: body.count("\n") for table, body in blocks.items()}
    counts = clinic_counts(patients)
    assert rows == {"departments": counts.departments, "patients": counts.patients,
                    "encounters": counts.encounters, "lab_results": counts.lab_results}


def test_demo_sql_is_deterministic_per_seed() -> None:
    assert clinic_sql(patients=50, seed=7) == clinic_sql(patients=50, seed=7)
    assert clinic_sql(patients=50, seed=7) != clinic_sql(patients=50, seed=8)


def test_loaded_data_is_identical_for_the_same_seed(pg_cluster: ClusterInfo) -> None:
    cluster = pg_cluster.cluster
    digest = ("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM {} t;")
    tables = ("patients", "encounters", "lab_results")
    cluster.create_database("clinic_repeat")
    try:
        cluster.execute(clinic_sql(patients=pg_cluster.patients), dbname="clinic_repeat")
        for table in tables:
            original = cluster.execute(digest.format(table), dbname=pg_cluster.database)
            repeat = cluster.execute(digest.format(table), dbname="clinic_repeat")
            assert original == repeat, table
    finally:
        cluster.execute("DROP DATABASE clinic_repeat;")


async def test_patient_directory_view(pg_cluster: ClusterInfo) -> None:
    async with connect(pg_cluster, pg_cluster.service_user, pg_cluster.service_password) as conn:
        rows = await conn.fetch("SELECT id, mrn, first_name, last_name FROM patient_directory")
        patients = await conn.fetch("SELECT id, mrn, first_name, last_name FROM patients")
        assert sorted(map(tuple, rows)) == sorted(map(tuple, patients))
        assert len(rows) == pg_cluster.patients
        assert all(re.fullmatch(r"MRN\d{7}", row["mrn"]) for row in rows)


async def test_service_role_can_write_and_run_ddl(pg_cluster: ClusterInfo) -> None:
    async with connect(pg_cluster, pg_cluster.service_user, pg_cluster.service_password) as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            new_id = await conn.fetchval(
                "INSERT INTO patients (mrn, first_name, last_name, date_of_birth, sex)"
                " VALUES ('MRN0000001', 'Test', 'Person', '2000-01-01', 'X') RETURNING id")
            assert new_id == pg_cluster.patients + 1
            await conn.execute("CREATE TABLE scratch (id int PRIMARY KEY)")
            await conn.execute("INSERT INTO scratch VALUES (1)")
        finally:
            await tx.rollback()


def test_occupied_port_fails_with_log_tail(pg_cluster: ClusterInfo) -> None:
    cluster = TempCluster(port=pg_cluster.port)
    with pytest.raises(ClusterError, match="Address already in use") as failure:
        cluster.start()
    assert "tail of" in str(failure.value)
    assert not cluster.root.exists()


def test_port_retry_and_context_manager(pg_cluster: ClusterInfo,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real_free_port = tempcluster.free_port
    offered = iter([pg_cluster.port])  # taken: the first start attempt must fail and retry
    monkeypatch.setattr(tempcluster, "free_port", lambda: next(offered, None) or real_free_port())
    with TempCluster() as cluster:
        assert cluster.port != pg_cluster.port
        assert cluster.execute("SELECT 40 + 2;") == "42\n"
        assert str(cluster.port) in cluster.dsn()
        root = cluster.root
        assert (root / "sock" / f".s.PGSQL.{cluster.port}").exists()
    assert not root.exists()
    with pytest.raises(ClusterError):
        _ = cluster.port
