"""``phigate policy check`` and ``phigate policy test`` through ``gateway.cli.main``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.cli import main
from tests.e2e.harness import PHIGATE
from tests.policies.conftest import EXAMPLES

POLICY = str(EXAMPLES / "clinic.yaml")
CASES = str(EXAMPLES / "clinic.tests.yaml")


def run(*argv: str) -> int:
    """Through the entry point's own parser: a command it does not register fails here."""
    return main(list(argv))


def test_check_allow_and_deny(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("policy", "check", "--policy", POLICY, "--user", "alice", "--groups",
               "clinicians", "--database", "clinic", "SELECT * FROM patients WHERE id = 1") == 0
    out = capsys.readouterr().out
    assert "decision:  allow" in out and "clinicians-read-phi" in out and "max_rows:  500" in out
    assert run("policy", "check", "--policy", POLICY, "--user", "alice", "--groups",
               "clinicians", "--database", "clinic", "SELECT * FROM patients") == 1
    out = capsys.readouterr().out
    assert "decision:  deny" in out and "rules:     no-bulk-export" in out
    assert "reason:    phigate: rule no-bulk-export" in out


def test_check_shows_rows_that_carry_several_patients() -> None:
    """Through the installed console script: a self-join's rows count twice toward max_rows."""
    done = subprocess.run(
        [str(PHIGATE), "policy", "check", "--policy", POLICY, "--user", "alice", "--groups",
         "clinicians", "--database", "clinic",
         "SELECT a.ssn, b.ssn FROM patients a JOIN patients b ON b.id = a.id + 1 WHERE a.id > 0"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "max_rows:  250 (each row carries 2 rows of PHI tables)" in done.stdout


def test_check_with_reason_time_and_ip(capsys: pytest.CaptureFixture[str]) -> None:
    base = ("policy", "check", "--policy", POLICY, "--user", "oncall", "--groups", "engineers",
            "--database", "clinic", "--ip", "10.0.0.1", "--reason", "INC-1")
    ddl = "CREATE TABLE t (id int)"
    assert run(*base, "--now", "2024-06-04T10:00:00-04:00", ddl) == 1
    assert run(*base, "--now", "2024-06-04T22:00:00-04:00", ddl) == 0
    assert "break-glass" in capsys.readouterr().out


def test_test_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run("policy", "test", "--policy", POLICY, CASES) == 0
    assert capsys.readouterr().out.rstrip().endswith("passed, 0 failed")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases:\n  - {user: alice, groups: [clinicians], database: clinic, "
                   "sql: 'SELECT * FROM patients', expect: allow}\n")
    assert run("policy", "test", "--policy", POLICY, str(bad)) == 1
    assert "FAIL" in capsys.readouterr().out


def test_usage_and_config_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run("policy", "check", "--user", "a", "--database", "d", "SELECT 1") == 2
    assert "give -c phigate.yaml or --policy FILE" in capsys.readouterr().err
    assert run("policy", "check", "--policy", str(tmp_path / "missing.yaml"), "--user", "a",
               "--database", "d", "SELECT 1") == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  - name: r\n    allow: [selct]\n")
    assert run("policy", "test", "--policy", str(broken), CASES) == 2
    assert f"{broken}:3: rules[0].allow[0]: unknown class 'selct'" in capsys.readouterr().err
    assert run("policy", "check", "--policy", POLICY, "--user", "a", "--database", "d",
               "--now", "2024-06-04T10:00:00", "SELECT 1") == 2
    with pytest.raises(SystemExit) as raised:
        run("policy")
    assert raised.value.code == 2


def test_groups_from_the_gateway_config(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    from protocols.postgres.scram import make_verifier

    verifier = make_verifier("pw", iterations=4096)
    config = tmp_path / "phigate.yaml"
    config.write_text(
        "listen: 127.0.0.1:6432\n"
        "databases:\n  clinic: {host: 127.0.0.1, port: 5432, user: svc}\n"
        f"users:\n  alice:\n    password: '{verifier}'\n    groups: [clinicians]\n"
        f"policies: [{POLICY}]\n")
    code = run("policy", "check", "-c", str(config), "--user", "alice", "--database", "clinic",
               "SELECT * FROM patients WHERE id = 1")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "clinicians-read-phi" in captured.out
