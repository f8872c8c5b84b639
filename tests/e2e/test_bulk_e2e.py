"""Bulk-export limits through the gateway with psql, asyncpg and psycopg.

A policy like the example clinic one, with small limits so the 200-patient test database can
show them: a clinician gets at most ``max_rows`` (50) patients' identifiers from any statement
and an engineer none, whatever the shape; the legitimate work still runs; byte cuts happen
mid-COPY and mid-cursor and the session stays usable.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import IDENTITIES, PHIGATE, REPO, GatewayProcess, psql
from tests.e2e.tcp_relay import ThreadedRelay

POLICY = """\
phi_tables: [clinic.public.patients, clinic.public.encounters, clinic.public.lab_*]
rules:
  - name: clinicians-read-phi
    groups: [clinicians]
    allow: [select, transaction, session]
    max_rows: 50
    max_bytes: 4KiB
  - name: engineers-no-phi
    groups: [engineers]
    allow: [select, transaction, session]
    phi: deny
  - name: no-bulk-export
    groups: [clinicians, engineers]
    deny: [bulk_export]
  - name: exporter
    users: [oncall]
    allow: [select, copy_out, transaction, session]
    max_bytes: 2KiB
"""
MAX_ROWS = 50
MRN = re.compile(r"MRN\d{7}")

ATTEMPTS = [
    "SELECT jsonb_agg(p) FROM patients p WHERE id > 0",
    "SELECT string_agg(mrn, ',') FROM patients WHERE id > 0",
    "SELECT ARRAY(SELECT mrn FROM patients WHERE id > 0)",
    "SELECT encode(convert_to(string_agg(mrn, ','), 'UTF8'), 'base64') FROM patients WHERE id > 0",
    "SELECT mrn, lag(mrn, 1) OVER (ORDER BY id), lag(mrn, 2) OVER (ORDER BY id) "
    "FROM patients WHERE id > 0",
    "SELECT ARRAY(SELECT mrn FROM patients ORDER BY id LIMIT 50 OFFSET g * 50) "
    "FROM generate_series(0, 3) g",
    "WITH RECURSIVE r(n, acc) AS (SELECT 0, ''::text UNION ALL SELECT n + 1, acc || "
    "(SELECT mrn FROM patients WHERE id = n + 1) FROM r WHERE n < 200) "
    "SELECT acc FROM r ORDER BY n DESC LIMIT 1",
    "SELECT mrn FROM patients WHERE id > 0",
    "SELECT a.mrn, b.mrn FROM patients a JOIN patients b ON b.id = a.id + 100 WHERE a.id > 0",
    "SELECT most_common_vals::text, histogram_bounds::text FROM pg_stats "
    "WHERE tablename = 'patients'",
    "SELECT query FROM pg_stat_activity",
    "SELECT mrn FROM patient_directory WHERE id > 0",
]


@pytest.fixture(scope="module")
def bulk(pg_cluster: ClusterInfo, tmp_path_factory: pytest.TempPathFactory) -> GatewayProcess:
    pg_cluster.cluster.execute("ANALYZE patients", dbname="clinic")  # pg_stats holds MRNs
    work = tmp_path_factory.mktemp("bulk")
    policy = work / "bulk.yaml"
    policy.write_text(POLICY)
    process = GatewayProcess(work, pg_cluster, {"policies": [str(policy)]}).start()
    yield process
    process.stop()


@pytest.mark.parametrize("sql", ATTEMPTS)
def test_no_statement_gives_more_than_max_rows_identifiers(bulk: GatewayProcess,
                                                           sql: str) -> None:
    clinician = psql(bulk, sql, user="alice")
    assert len(set(MRN.findall(clinician.stdout))) <= MAX_ROWS, sql
    engineer = psql(bulk, sql, user="bob")
    assert not MRN.findall(engineer.stdout), sql


def test_the_direct_database_would_have_given_them(pg_cluster: ClusterInfo) -> None:
    """The attempts are real: without the gateway they return every patient."""
    out = pg_cluster.cluster.execute(ATTEMPTS[1], dbname="clinic")
    assert len(set(MRN.findall(out))) == 200


def test_denials_name_the_construct_and_the_catalogs(bulk: GatewayProcess) -> None:
    result = psql(bulk, ATTEMPTS[0], user="alice")
    assert "42501" in result.stderr or "no-bulk-export" in result.stderr
    assert "aggregate jsonb_agg" in result.stderr and "LIMIT 50" in result.stderr
    result = psql(bulk, "SELECT query FROM pg_stat_activity", user="bob")
    assert "engineers-no-phi" in result.stderr


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_legitimate_work_keeps_working_in_psql(bulk: GatewayProcess, user: str) -> None:
    for meta in (r"\d", r"\dt", r"\d+ patients", r"\d departments"):
        result = psql(bulk, meta, user=user)
        assert result.returncode == 0, (meta, result.stderr)
    assert "patients" in psql(bulk, r"\dt", user=user).stdout


def test_clinician_reports_in_psql(bulk: GatewayProcess) -> None:
    assert psql(bulk, "SELECT count(*) FROM patients").stdout.strip() == "200"
    avg = psql(bulk, "SELECT avg(extract(year FROM date_of_birth)) FROM patients")
    assert avg.returncode == 0 and avg.stdout.strip()
    report = psql(bulk, "SELECT id % 20, count(*) FROM patients GROUP BY 1 ORDER BY 1")
    assert report.returncode == 0 and len(report.stdout.split()) == 20
    bounded = psql(bulk, "SELECT string_agg(mrn, ',') FROM "
                         "(SELECT mrn FROM patients ORDER BY id LIMIT 20) s")
    assert bounded.returncode == 0 and len(MRN.findall(bounded.stdout)) == 20


def test_asyncpg_parameters_and_denials(bulk: GatewayProcess) -> None:
    async def run() -> None:
        conn = await _asyncpg(bulk, "alice")
        try:
            assert (await conn.fetchval("SELECT mrn FROM patients WHERE id = $1", 3)).startswith(
                "MRN")
            assert await conn.fetchval("SELECT count(*) FROM patients") == 200
            rows = await conn.fetch("SELECT id % 20 AS k, avg(id) FROM patients GROUP BY 1")
            assert len(rows) == 20
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError,
                               match="no-bulk-export"):
                await conn.fetch("SELECT jsonb_agg(p) FROM patients p WHERE id > $1", 0)
            with pytest.raises(asyncpg.exceptions.ProgramLimitExceededError):
                await conn.fetch("SELECT mrn FROM patients WHERE id > $1", 0)
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
        engineer = await _asyncpg(bulk, "bob")
        try:
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await engineer.fetch("SELECT * FROM pg_stats")
            assert await engineer.fetchval(
                "SELECT count(*) FROM pg_stats WHERE tablename = 'departments'") >= 0
        finally:
            await engineer.close()
    asyncio.run(run())


def test_psycopg_byte_cut_mid_cursor_then_usable(bulk: GatewayProcess) -> None:
    with psycopg.connect(bulk.dsn("alice")) as conn:
        assert conn.execute("SELECT mrn FROM patients WHERE id = %s", (4,)).fetchone()
        conn.execute("DECLARE c CURSOR FOR SELECT * FROM patients WHERE id > 0")
        assert len(conn.execute("FETCH 10 FROM c").fetchall()) == 10
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="max_bytes"):
            conn.execute("FETCH 30 FROM c").fetchall()
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM patients").fetchone() == (200,)


def test_psycopg_byte_cut_mid_copy_then_usable(bulk: GatewayProcess) -> None:
    with psycopg.connect(bulk.dsn("oncall"), autocommit=True) as conn:
        received = 0
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="max_bytes"):
            with conn.cursor().copy("COPY (SELECT * FROM patients ORDER BY id) TO STDOUT") as copy:
                for chunk in copy:
                    received += len(chunk)
        assert 0 < received <= 2048
        assert conn.execute("SELECT 1").fetchone() == (1,)
    sql = "COPY (SELECT * FROM patients ORDER BY id) TO STDOUT"
    (statement,) = _journal(bulk, sql)
    outcomes = _journal(bulk, None, session=statement["session"], n=statement["n"])
    assert outcomes and outcomes[-1]["byte_limit_hit"] is True, outcomes
    assert outcomes[-1]["sqlstate"] == "54000" and "max_bytes (2048" in outcomes[-1]["error"]
    assert 0 < outcomes[-1]["bytes"] <= 2048 + 5 * 20  # sent, frame headers included


class SlowCancels(ThreadedRelay):
    """In front of the upstream: holds CancelRequests for ``delay`` seconds, as a far or busy
    server would, so a cut's cancel lands well after the cut."""

    def __init__(self, target_port: int, delay: float) -> None:
        super().__init__(target_port)
        self.delay = delay
        self.cancels = 0

    async def opening(self, client: asyncio.StreamReader) -> bytes:
        first = await client.readexactly(8)
        if first == CANCEL_REQUEST_HEAD:
            self.cancels += 1
            await asyncio.sleep(self.delay)
        return first


CANCEL_REQUEST_HEAD = struct.pack("!ii", 16, 80877102)


def test_late_cancel_of_a_cut_never_hits_the_next_statement(
        pg_cluster: ClusterInfo, tmp_path: Path) -> None:
    """The COPY is long finished when the cut's cancel lands; the statement sent next runs
    whole. Without the wait for the cancel, it lands 0.5 s into the next statement."""
    policy = tmp_path / "bulk.yaml"
    policy.write_text(POLICY)
    with SlowCancels(pg_cluster.port, delay=0.5) as relay:
        gateway = GatewayProcess(tmp_path, pg_cluster, {
            "policies": [str(policy)], "databases": {"clinic": {"port": relay.port}}}).start()
        try:
            with psycopg.connect(gateway.dsn("oncall"), autocommit=True) as conn:
                with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="max_bytes"):
                    with conn.cursor().copy("COPY (SELECT * FROM patients) TO STDOUT") as copy:
                        for _ in copy:
                            pass
                assert conn.execute("SELECT 1 FROM pg_sleep(1.5)").fetchone() == (1,)
                assert conn.execute("SELECT 2").fetchone() == (2,)
        finally:
            gateway.stop()
    assert relay.cancels == 1


def test_journal_records_the_construct(bulk: GatewayProcess) -> None:
    psql(bulk, ATTEMPTS[1], user="alice")
    entries = _journal(bulk, ATTEMPTS[1])
    assert any("aggregate string_agg" in e.get("export_via", []) for e in entries), entries


async def _asyncpg(gateway: GatewayProcess, user: str) -> asyncpg.Connection:
    return await asyncpg.connect(host="127.0.0.1", port=gateway.port, user=user,
                                 password=IDENTITIES[user].password, database="clinic",
                                 ssl=False)


def _journal(gateway: GatewayProcess, sql: str | None, **match: object) -> list[dict[str, Any]]:
    """Journal entries with this SQL (statements), or matching ``match`` (outcomes)."""
    deadline = time.monotonic() + 5
    while True:
        shown = subprocess.run([str(PHIGATE), "journal", "show", str(gateway.journal_dir),
                                "--json"], cwd=REPO, capture_output=True, text=True, timeout=30)
        entries = [json.loads(line) for line in shown.stdout.splitlines()]
        hits = [e for e in entries if (sql is None or e.get("sql") == sql)
                and all(e.get(k) == v for k, v in match.items())
                and (sql is not None or e.get("type") == "outcome")]
        if hits or time.monotonic() > deadline:
            return hits
        time.sleep(0.2)


def test_policy_check_explains_the_export_and_the_byte_limit(tmp_path: Path) -> None:
    policy = tmp_path / "bulk.yaml"
    policy.write_text(POLICY)
    check = [str(PHIGATE), "policy", "check", "--policy", str(policy), "--user", "alice",
             "--groups", "clinicians", "--database", "clinic"]
    denied = subprocess.run([*check, "SELECT jsonb_agg(p) FROM patients p WHERE id > 0"],
                            capture_output=True, text=True, timeout=30)
    assert denied.returncode != 0 and "export:    aggregate jsonb_agg" in denied.stdout
    allowed = subprocess.run([*check, "SELECT mrn FROM patients WHERE id = 1"],
                             capture_output=True, text=True, timeout=30)
    assert allowed.returncode == 0 and "max_bytes: 4096" in allowed.stdout


def test_rows_carrying_two_patients_count_twice(bulk: GatewayProcess) -> None:
    """max_rows (50) counts patients: a self-join's rows carry two, so 25 rows is the limit,
    while a join whose second table only filters still gets 50."""
    pairs = ("SELECT a.mrn, b.mrn FROM patients a JOIN patients b ON b.id = a.id + 100 "
             "WHERE a.id <= {n}")
    ok = psql(bulk, pairs.format(n=25), user="alice")
    assert ok.returncode == 0 and len(set(MRN.findall(ok.stdout))) == 50, ok.stderr
    cut = psql(bulk, pairs.format(n=26), user="alice")
    assert cut.returncode != 0 and "each row carries 2 rows of PHI tables" in cut.stderr
    assert not MRN.findall(cut.stdout)
    filtered = psql(bulk, "SELECT a.mrn FROM patients a JOIN patients b ON b.id = a.id "
                          "WHERE a.id <= 50", user="alice")
    assert filtered.returncode == 0 and len(MRN.findall(filtered.stdout)) == 50
