"""``phigate drill`` and the ``drill:`` schedule against a real gateway and PostgreSQL.

The drill logs in through the gateway's listener as drill-bot, runs allowed, denied and
row-limited statements and a failed-login burst; the report is signed, journaled as a
``drill`` entry, and exported as metrics; the session's recording replays exactly the
drill's statements. A gateway whose policy does not deny what the drill expects denied,
or that cannot record the session, fails the drill (exit 1) and raises the journal alert.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.drill.report import verify_report
from gateway.journal.keys import load_public
from gateway.recording.keys import generate_key_file
from protocols.postgres.scram import make_verifier
from tests.e2e.harness import PHIGATE, REPO, GatewayProcess, free_port

DRILL_PASSWORD = "drill-bot-long-random-password"
POLICY = {"phi_tables": [], "rules": [
    {"name": "everyone-else", "groups": ["clinicians", "engineers", "sre"], "allow": ["all"]},
    {"name": "drill-bot-reads", "users": ["drill-bot"], "allow": ["select"], "max_rows": 5}]}


def drill_overrides(tmp: Path, *, policy: dict[str, Any] = POLICY, recordings: bool = True,
                    **drill: Any) -> dict[str, Any]:
    path = tmp / "drill-policy.yaml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    recorded = {}
    if recordings:
        key = tmp / "recordings.key"
        if not key.exists():
            generate_key_file(key)
        recorded = {"recordings": {"dir": str(tmp / "recordings"), "key_file": str(key),
                                   "flush_interval": "100ms"}}
    return {
        **recorded,
        "users": {"drill-bot": {"password": make_verifier(DRILL_PASSWORD)}},
        "policies": [str(path)],
        "metrics": f"127.0.0.1:{free_port()}",
        "alerts": {"sinks": {"ops-log": {"type": "log"}}, "rules": [
            {"name": "brute-force", "when": "failed_logins", "threshold": 3, "window": "1m",
             "sinks": ["ops-log"]},
            {"name": "audit-trail", "when": "journal", "sinks": ["ops-log"]}]},
        "drill": {"identity": "drill-bot", "database": "clinic",
                  "password_env": "PHIGATE_DRILL_PASSWORD",
                  "denied": "CREATE TABLE phigate_drill_canary (x int)",
                  "max_rows": "SELECT generate_series(1, 100)", **drill},
    }


def drill(gateway: GatewayProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PHIGATE), "drill", "-c", str(gateway.config_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=gateway.env)


def metric(gateway: GatewayProcess, name: str) -> float:
    deadline = time.monotonic() + 10  # the metrics listener opens just after the gateway's
    while True:
        try:
            with urllib.request.urlopen(f"http://{gateway.config['metrics']}/metrics") as answer:
                text = answer.read().decode()
            break
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(name)


def journal(gateway: GatewayProcess, kind: str) -> list[dict[str, Any]]:
    result = subprocess.run([str(PHIGATE), "journal", "show", str(gateway.journal_dir),
                             "--json", "--type", kind], capture_output=True, text=True)
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_drill_passes_is_signed_journaled_and_exported(
        start_gateway: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    gateway = start_gateway(drill_overrides(tmp_path),
                            env={"PHIGATE_DRILL_PASSWORD": DRILL_PASSWORD})
    assert metric(gateway, "phigate_drill_last_success_timestamp_seconds") == 0
    before = time.time()
    result = drill(gateway)
    assert result.returncode == 0, result.stdout + result.stderr + gateway.log()
    assert "drill PASSED" in result.stdout and "FAIL" not in result.stdout
    for name in ("login", "failed login burst", "journal verify", "alerts fired",
                 "journal: failed logins", "journal: session end", "recording replay"):
        assert f"PASS  {name}" in result.stdout
    [entry] = journal(gateway, "drill")
    assert entry["passed"] is True and entry["identity"] == "drill-bot"
    report = Path(result.stdout.split("report: ")[1].split()[0])
    body = verify_report(report.read_bytes(), load_public(gateway.public_key))
    assert body["passed"] is True and body["last_seq"] > body["first_seq"]
    [replayed] = [c for c in body["checks"] if c["name"] == "recording replay"]
    assert replayed["passed"] and "4 statements replayed" in replayed["detail"]
    forged = report.read_bytes().replace(b'"passed":true', b'"passed":false', 1)
    try:
        verify_report(forged, load_public(gateway.public_key))
        raise AssertionError("a tampered report verified")
    except ValueError:
        pass
    assert metric(gateway, "phigate_drill_last_success_timestamp_seconds") >= before
    assert metric(gateway, "phigate_drill_failures_total") == 0
    statements = [s for s in journal(gateway, "statement") if s.get("decision") == "deny"]
    assert any(s["sql"] == "CREATE TABLE phigate_drill_canary (x int)" for s in statements)


def test_drill_fails_when_the_policy_does_not_deny_or_the_session_is_not_recorded(
        start_gateway: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    lax = {"phi_tables": [], "rules": [{"name": "allow-all", "allow": ["all", "dangerous"]}]}
    overrides = drill_overrides(tmp_path, policy=lax, denied="SELECT 'should be denied'")
    del overrides["drill"]["max_rows"]
    # Today's recordings directory cannot be made: sessions run unrecorded (required: false).
    overrides["recordings"]["required"] = False
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / time.strftime("%Y-%m-%d", time.gmtime())).write_text("")
    gateway = start_gateway(overrides, env={"PHIGATE_DRILL_PASSWORD": DRILL_PASSWORD})
    result = drill(gateway)
    assert result.returncode == 1, result.stdout
    assert "FAIL  statement \"SELECT 'should be denied'\"" in result.stdout
    assert "FAIL  recording replay: the drill session was not recorded" in result.stdout
    assert "drill FAILED" in result.stdout
    [entry] = journal(gateway, "drill")
    assert entry["passed"] is False and entry["failed_checks"]
    assert metric(gateway, "phigate_drill_failures_total") == 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(
            a["rule"] == "audit-trail" for a in journal(gateway, "alert")):
        time.sleep(0.1)
    assert any(a["rule"] == "audit-trail" and "audit drill failed" in a["summary"]
               for a in journal(gateway, "alert"))


def test_scheduled_drill_runs_inside_the_gateway(
        start_gateway: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    gateway = start_gateway(drill_overrides(tmp_path, every="1s"),
                            env={"PHIGATE_DRILL_PASSWORD": DRILL_PASSWORD})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not journal(gateway, "drill"):
        time.sleep(0.2)
    entries = journal(gateway, "drill")
    assert entries and entries[0]["passed"] is True, gateway.log()
    assert metric(gateway, "phigate_drill_last_success_timestamp_seconds") > 0


@pytest.mark.parametrize(("drill_section", "message"), [
    ({"identity": "drill-bot"}, "password_env or password_file"),
    ({"password_file": "/dev/null", "archive_within": "0s"}, "archive_within: must be positive"),
])
def test_drill_config_errors(tmp_path: Path, drill_section: dict[str, Any], message: str
                             ) -> None:
    config = {"databases": {"clinic": {"host": "127.0.0.1", "user": "x"}},
              "drill": drill_section}
    path = tmp_path / "phigate.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = subprocess.run([str(PHIGATE), "check-config", "-c", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr, result.stderr
