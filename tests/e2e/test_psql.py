"""Real psql through the gateway: queries, errors, \\copy both ways, Ctrl-C cancel."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import ClusterInfo
from tests.e2e.harness import GatewayProcess, psql


def test_multi_statement_query_string(gateway: GatewayProcess) -> None:
    result = psql(gateway, "SELECT 1; SELECT count(*) FROM patients; SELECT 'x' || 'y'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "200", "xy"]


def test_service_role_runs_queries_identity_is_in_application_name(
        gateway: GatewayProcess) -> None:
    result = psql(gateway, "SELECT current_user, application_name FROM pg_stat_activity "
                           "WHERE pid = pg_backend_pid()", args=("-v", "x=1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "phigate_svc|phigate/alice/psql"


def test_error_then_continuing_in_the_same_session(gateway: GatewayProcess) -> None:
    script = "SELECT 1/0;\nSELECT 'after the error';\nBEGIN;\nSELECT nope;\nROLLBACK;\nSELECT 42;\n"
    result = psql(gateway, args=("-v", "ON_ERROR_STOP=0"), stdin=script)
    assert 'division by zero' in result.stderr
    assert 'column "nope" does not exist' in result.stderr
    assert result.stdout.splitlines() == ["after the error", "BEGIN", "ROLLBACK", "42"]


def test_copy_out_and_in_with_backslash_copy(gateway: GatewayProcess, pg_cluster: ClusterInfo,
                                             tmp_path: Path) -> None:
    exported = tmp_path / "departments.csv"
    result = psql(gateway, f"\\copy (SELECT code, name FROM departments ORDER BY code) "
                           f"TO '{exported}' CSV")
    assert result.returncode == 0, result.stderr
    rows = exported.read_text().splitlines()
    assert len(rows) == int(pg_cluster.cluster.execute(
        "SELECT count(*) FROM departments", dbname="clinic"))
    setup = psql(gateway, "DROP TABLE IF EXISTS copy_target; "
                          "CREATE TABLE copy_target (code text, name text)")
    assert setup.returncode == 0, setup.stderr
    result = psql(gateway, f"\\copy copy_target FROM '{exported}' CSV")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"COPY {len(rows)}"
    check = psql(gateway, "SELECT count(*) FROM copy_target")
    assert check.stdout.strip() == str(len(rows))


def test_copy_from_stdin_failure_reports_and_session_survives(gateway: GatewayProcess) -> None:
    script = ("CREATE TEMP TABLE t (n int);\n"
              "COPY t FROM STDIN;\n1\nnot-a-number\n\\.\n"
              "SELECT count(*) FROM t;\n")
    result = psql(gateway, args=("-v", "ON_ERROR_STOP=0"), stdin=script)
    assert 'invalid input syntax for type integer' in result.stderr
    assert result.stdout.split()[-1] == "0"


def test_ctrl_c_cancels_the_running_query(gateway: GatewayProcess) -> None:
    command = ["psql", "-X", "-At", "-d", gateway.dsn("alice"), "-c", "SELECT pg_sleep(30)"]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)  # psql sends a CancelRequest on Ctrl-C
    _, stderr = process.communicate(timeout=20)
    assert "canceling statement due to user request" in stderr
    assert time.monotonic() - started < 15


def test_wrong_password_and_unknown_user_look_the_same(gateway: GatewayProcess) -> None:
    wrong = psql(gateway, "SELECT 1", user="alice", password="not-her-password")
    unknown = psql(gateway, "SELECT 1", user="mallory", password="anything")
    assert wrong.returncode != 0 and unknown.returncode != 0
    assert 'password authentication failed for user "alice"' in wrong.stderr
    assert 'password authentication failed for user "mallory"' in unknown.stderr
    assert wrong.stderr.replace("alice", "X") == unknown.stderr.replace("mallory", "X")


def test_unknown_database_is_3d000_after_authentication(gateway: GatewayProcess) -> None:
    command = ["psql", "-X", "-At", "-d", gateway.dsn("alice", dbname="nosuchdb"),
               "-v", "VERBOSITY=verbose", "-c", "SELECT 1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    assert 'database "nosuchdb" does not exist' in result.stderr


def test_pgbench_extended_and_prepared_protocols(gateway: GatewayProcess, tmp_path: Path) -> None:
    script = tmp_path / "lookup.sql"
    script.write_text("\\set pid random(1, 200)\n"
                      "SELECT last_name, date_of_birth FROM patients WHERE id = :pid;\n")
    for mode in ("extended", "prepared"):
        result = subprocess.run(
            ["pgbench", "-n", "-M", mode, "-t", "50", "-c", "4", "-f", str(script),
             gateway.dsn("alice")],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr + result.stdout
        assert "number of transactions actually processed: 200/200" in result.stdout
