"""The example clinic policy enforced through the gateway with real clients."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import psycopg
import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import CLINIC_POLICY, IDENTITIES, PHIGATE, REPO, GatewayProcess, psql

# A Tuesday, 10:00 in New York: inside the engineers' no-DDL window.
BUSINESS_HOURS = "2024-06-04T10:00:00-04:00"
NIGHT = "2024-06-04T23:30:00-04:00"


@pytest.fixture(scope="module")
def clinic(pg_cluster: ClusterInfo, tmp_path_factory: pytest.TempPathFactory
           ) -> GatewayProcess:
    process = GatewayProcess(tmp_path_factory.mktemp("clinic"), pg_cluster,
                             {"policies": [str(CLINIC_POLICY)]},
                             env={"PHIGATE_TEST_NOW": BUSINESS_HOURS}).start()
    yield process
    process.stop()


def verbose(gateway: GatewayProcess, sql: str, user: str = "alice",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return psql(gateway, sql, user=user, args=("-v", "VERBOSITY=verbose"), env=env)


def test_clinician_reads_one_patient(clinic: GatewayProcess) -> None:
    result = psql(clinic, "SELECT mrn FROM patients WHERE id = 3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_clinician_write_is_denied_with_42501_naming_the_rule(clinic: GatewayProcess) -> None:
    result = verbose(clinic, "UPDATE patients SET phone = '555' WHERE id = 3")
    assert result.returncode != 0
    assert "42501: phigate:" in result.stderr
    assert "HINT:" in result.stderr


def test_unbounded_phi_scan_is_a_bulk_export(clinic: GatewayProcess) -> None:
    result = verbose(clinic, "SELECT * FROM patients")
    assert "42501" in result.stderr and "no-bulk-export" in result.stderr


def test_copy_out_of_phi_is_blocked(clinic: GatewayProcess, tmp_path: Path) -> None:
    for sql in (f"\\copy patients TO '{tmp_path / 'p.csv'}' CSV",
                f"\\copy (SELECT * FROM patients) TO '{tmp_path / 'q.csv'}' CSV",
                "COPY (SELECT mrn FROM encounters e JOIN patients p ON p.id = e.patient_id) "
                "TO STDOUT"):
        result = verbose(clinic, sql)
        assert result.returncode != 0 and "42501" in result.stderr, sql
    assert not (tmp_path / "p.csv").exists() or not (tmp_path / "p.csv").read_text()


@pytest.mark.parametrize("sql", [
    "SELECT 1; UPDATE patients SET phone = '1' WHERE id = 1",  # multi-statement string
    "/* harmless */ uPdAtE public.PATIENTS SET phone = '1' WHERE id = 1",
    "WITH x AS (UPDATE patients SET phone = '1' WHERE id = 1 RETURNING id) SELECT * FROM x",
    "SELECT pg_read_file('/etc/passwd')",
    "SET ROLE postgres",
    "SELECT set_config('role', 'postgres', false)",
    "DO $$BEGIN EXECUTE 'DELETE FROM patients'; END$$",
    "PREPARE p AS DELETE FROM patients; EXECUTE p",
])
def test_bypass_attempts_are_denied_and_nothing_runs(clinic: GatewayProcess,
                                                     pg_cluster: ClusterInfo, sql: str) -> None:
    before = pg_cluster.cluster.execute("SELECT md5(string_agg(phone, ',' ORDER BY id)) "
                                        "FROM patients", dbname="clinic")
    result = verbose(clinic, sql)
    assert result.returncode != 0 and "42501" in result.stderr, (sql, result.stderr)
    after = pg_cluster.cluster.execute("SELECT md5(string_agg(phone, ',' ORDER BY id)) "
                                       "FROM patients", dbname="clinic")
    assert before == after


def test_max_rows_cuts_the_stream_then_the_session_goes_on(clinic: GatewayProcess) -> None:
    with psycopg.connect(clinic.dsn("alice")) as conn:
        received = 0
        with pytest.raises(psycopg.errors.ProgramLimitExceeded) as raised:
            for _ in conn.cursor().stream("SELECT id, value FROM lab_results WHERE value > 0"):
                received += 1
        assert received == 500
        assert "phigate:" in str(raised.value) and "clinicians-read-phi" in str(raised.value)
        conn.rollback()
        assert conn.execute("SELECT 'still usable'").fetchone() == ("still usable",)


async def test_max_rows_counts_every_fetch_from_a_cursor(clinic: GatewayProcess) -> None:
    conn = await asyncpg.connect(host="127.0.0.1", port=clinic.port, user="alice",
                                 password=IDENTITIES["alice"].password, database="clinic",
                                 ssl=False)
    try:
        async with conn.transaction():
            await conn.execute("DECLARE c CURSOR FOR SELECT id FROM lab_results "
                               "WHERE value > 0 ORDER BY id")
            first = await conn.fetch("FETCH 300 FROM c")
            assert len(first) == 300
            with pytest.raises(asyncpg.ProgramLimitExceededError):
                await conn.fetch("FETCH 300 FROM c")
        assert await conn.fetchval("SELECT 42") == 42
    finally:
        await conn.close()


async def test_prepared_statement_denied_at_parse_session_survives(
        clinic: GatewayProcess) -> None:
    conn = await asyncpg.connect(host="127.0.0.1", port=clinic.port, user="alice",
                                 password=IDENTITIES["alice"].password, database="clinic",
                                 ssl=False)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="phigate:"):
            await conn.prepare("DELETE FROM patients WHERE id = $1")
        row = await conn.fetchrow("SELECT mrn FROM patients WHERE id = $1", 5)
        assert row is not None
    finally:
        await conn.close()


def test_pipeline_denial_recovers_at_sync(clinic: GatewayProcess) -> None:
    with psycopg.connect(clinic.dsn("alice"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with conn.pipeline(), conn.cursor() as cur:
                cur.execute("SELECT mrn FROM patients WHERE id = %s", (1,))
                cur.execute("DELETE FROM patients WHERE id = %s", (1,))
                cur.execute("SELECT 2")
        assert conn.execute("SELECT %s::int", (7,)).fetchone() == (7,)


def test_engineer_ddl_denied_in_business_hours(clinic: GatewayProcess) -> None:
    result = verbose(clinic, "CREATE TABLE scratch_bob (n int)", user="bob")
    assert "no-schema-changes-in-business-hours" in result.stderr


def test_engineers_may_not_touch_phi(clinic: GatewayProcess) -> None:
    assert psql(clinic, "SELECT code FROM departments LIMIT 1", user="bob").returncode == 0
    result = verbose(clinic, "SELECT mrn FROM patients WHERE id = 1", user="bob")
    assert "engineers-no-phi" in result.stderr


def test_view_over_phi_counts_as_phi(clinic: GatewayProcess) -> None:
    result = verbose(clinic, "SELECT * FROM patient_directory WHERE id = 1", user="bob")
    assert "42501" in result.stderr and "engineers-no-phi" in result.stderr


def test_break_glass_needs_a_reason(clinic: GatewayProcess) -> None:
    denied = verbose(clinic, "SELECT mrn FROM patients WHERE id = 1", user="oncall")
    assert denied.returncode != 0 and "42501" in denied.stderr
    with_options = verbose(clinic, "SELECT mrn FROM patients WHERE id = 1", user="oncall",
                           env={"PGOPTIONS": "-c phigate.reason=INC-1234"})
    assert with_options.returncode == 0, with_options.stderr
    in_session = psql(clinic, "SET phigate.reason = 'INC-99'; "
                              "SELECT mrn FROM patients WHERE id = 1", user="oncall")
    assert in_session.returncode == 0, in_session.stderr


def test_decisions_are_journaled_with_rule_and_tables(clinic: GatewayProcess) -> None:
    verbose(clinic, "SELECT * FROM patients")
    deadline = time.monotonic() + 5
    while True:
        shown = subprocess.run(
            [str(PHIGATE), "journal", "show", str(clinic.journal_dir),
             "--json", "--decision", "deny", "--table", "patients"],
            cwd=REPO, capture_output=True, text=True, timeout=30)
        rows = [json.loads(line) for line in shown.stdout.splitlines()]
        hits = [r for r in rows if r.get("sql") == "SELECT * FROM patients"]
        if hits or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert hits, shown.stdout + shown.stderr
    entry = hits[-1]
    assert entry["decision"] == "deny" and "no-bulk-export" in entry["rules"]
    assert entry["bulk_export"] is True and "patients" in entry["phi_tables"]


def test_volume_budget_then_denied(start_gateway: Callable[..., GatewayProcess],
                                   tmp_path: Path) -> None:
    policy = tmp_path / "budget.yaml"
    policy.write_text(CLINIC_POLICY.read_text().replace("max_phi_rows_per_hour: 5000",
                                                        "max_phi_rows_per_hour: 30"))
    gateway = start_gateway({"policies": [str(policy)]})
    sql = "SELECT id FROM patients WHERE id <= 20"
    assert len(psql(gateway, sql).stdout.split()) == 20
    cut = verbose(gateway, sql)  # 10 rows left in the hour's budget: cut after them
    assert "54000" in cut.stderr
    after = verbose(gateway, "SELECT id FROM patients WHERE id = 1")
    assert after.returncode != 0


def test_sighup_reaches_a_session_that_repeats_a_statement(
        start_gateway: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    """A statement the session's fast path decided before (simple and extended protocol) is
    decided by the reloaded policies the moment they are in force."""
    policy = tmp_path / "live.yaml"
    policy.write_text(CLINIC_POLICY.read_text())
    gateway = start_gateway({"policies": [str(policy)]})
    sql = "SELECT code FROM departments WHERE length(code) > 1"
    with psycopg.connect(gateway.dsn("bob"), autocommit=True) as conn:
        for _ in range(3):  # extended protocol (Parse, Bind, Execute) and simple, warm
            conn.execute(sql).fetchall()
            assert conn.pgconn.exec_(sql.encode()).status == psycopg.pq.ExecStatus.TUPLES_OK
        policy.write_text(CLINIC_POLICY.read_text().replace(
            "groups: [engineers]\n    databases", "groups: [nobody]\n    databases"))
        loaded = gateway.log().count("policies loaded")
        gateway.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while gateway.log().count("policies loaded") == loaded:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql)
        refused = conn.pgconn.exec_(sql.replace("> 1", "> 2").encode())
        assert refused.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"42501"


def test_sighup_reloads_policies(start_gateway: Callable[..., GatewayProcess],
                                 tmp_path: Path) -> None:
    policy = tmp_path / "live.yaml"
    policy.write_text(CLINIC_POLICY.read_text())
    gateway = start_gateway({"policies": [str(policy)]})
    assert psql(gateway, "SELECT code FROM departments LIMIT 1", user="bob").returncode == 0
    policy.write_text(CLINIC_POLICY.read_text().replace("groups: [engineers]\n    databases",
                                                        "groups: [nobody]\n    databases"))
    gateway.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "policies loaded" not in gateway.log():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert psql(gateway, "SELECT code FROM departments LIMIT 1", user="bob").returncode != 0
    policy.write_text("rules: [ {name: broken, allow: [nonsense]} ]\n")
    gateway.signal(signal.SIGHUP)
    while "policy reload failed" not in gateway.log():
        assert time.monotonic() < deadline + 10
        time.sleep(0.05)
    assert psql(gateway, "SELECT code FROM departments LIMIT 1", user="bob").returncode != 0
    # The journal says which policy is really enforced, and that the file on disk is not it.
    while True:
        shown = subprocess.run(
            [str(PHIGATE), "journal", "show", str(gateway.journal_dir),
             "--json", "--type", "config_loaded"],
            cwd=REPO, capture_output=True, text=True, timeout=30)
        loads = [json.loads(line) for line in shown.stdout.splitlines()]
        if len(loads) >= 3 or time.monotonic() > deadline + 20:
            break
        time.sleep(0.2)
    assert [entry.get("policy_reload_failed", False) for entry in loads] == [False, False, True]
    assert loads[2]["policies"] == loads[1]["policies"] != loads[2]["policy_files"]


def test_no_policy_files_denies_everything(start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway({"policies": None})
    result = verbose(gateway, "SELECT 1")
    assert "42501" in result.stderr
    assert "no policy files configured" in gateway.log()


def test_night_allows_what_business_hours_deny(start_gateway: Callable[..., GatewayProcess],
                                               pg_cluster: ClusterInfo) -> None:
    gateway = start_gateway({"policies": [str(CLINIC_POLICY)]}, env={"PHIGATE_TEST_NOW": NIGHT})
    result = verbose(gateway, "CREATE TABLE scratch_bob (n int)", user="bob")
    # At night the time-window deny does not apply; engineers still have no DDL allow.
    assert "no-schema-changes-in-business-hours" not in result.stderr
    assert "42501" in result.stderr


