"""Every ``phigate`` command the README shows, run through the installed console script.

The README is the user's manual: a command it shows must exist and work with the arguments it
shows. This module extracts every ``phigate …`` invocation from README.md (fenced blocks and
inline code), requires that each one has a row in ``COMMANDS`` (so a new README command without
a test fails here), and runs each row as a subprocess of ``.venv/bin/phigate`` in a workspace laid
out like the README's examples (``phigate.yaml``, ``keys/``, ``var/journal``). Only placeholders
(``FILE``, ``DIR``, ``SESSION_ID``, machine paths such as ``/mnt/audit-witness/phigate``) are
substituted; no test builds its own parser.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import ClusterInfo
from tests.e2e.harness import PHIGATE, REPO, free_port

README = REPO / "README.md"
ALICE_PASSWORD = "alice-readme-password"
START_TIMEOUT_S = 15.0

# README command (whitespace normalised, trailing comment removed) -> (argv tail after
# substitution, expected exit code, text the output must contain). Names of commands that the
# README only mentions in prose (`phigate policy`, `phigate demo`) are in MENTIONS.
COMMANDS: dict[str, tuple[str, int, str]] = {
    "phigate keygen keys/journal": ("keygen keys/journal", 0, ""),
    "phigate keygen PATH": ("keygen keys/other", 0, ""),
    "phigate keygen --recording-key PATH": ("keygen --recording-key keys/other-recordings.key",
                                            0, ""),
    "phigate keygen --recording-key keys/recordings.key":
        ("keygen --recording-key keys/recordings.key", 0, ""),
    "phigate keygen --masking-key PATH": ("keygen --masking-key keys/other-masking.key", 0,
                                          "masking hash key"),
    "phigate keygen --masking-key keys/masking.key":
        ("keygen --masking-key keys/masking.key", 0, "masking hash key"),
    "phigate passwd": ("passwd", 0, "SCRAM-SHA-256$"),
    "phigate check-config -c FILE": ("check-config -c phigate.yaml", 0, "OK"),
    "phigate serve -c /etc/phigate/phigate.yaml": ("serve -c phigate.yaml", 0, ""),
    "phigate policy check -c phigate.yaml --user alice --database clinic "
    '"SELECT * FROM patients"': (
        'policy check -c phigate.yaml --user alice --database clinic "SELECT * FROM patients"',
        1, "rules:     no-bulk-export"),
    "phigate policy test -c phigate.yaml examples/policies/clinic.tests.yaml": (
        "policy test -c phigate.yaml examples/policies/clinic.tests.yaml", 0, " 0 failed"),
    "phigate journal verify var/journal --key keys/journal.pub --checkpoints "
    "/mnt/audit-witness/phigate": (
        "journal verify var/journal --key keys/journal.pub --checkpoints witness", 0, ""),
    # This workspace has no drill: section: a config error (tests/drill/ runs real drills).
    "phigate drill -c phigate.yaml": ("drill -c phigate.yaml", 2, ""),
    # No archive in this workspace (and no AWS credentials): exit 2, the reason on stderr.
    # tests/archive/ runs both against real S3 servers.
    "phigate journal verify s3://evidence/phigate --key keys/journal.pub": (
        "journal verify s3://evidence/phigate --key keys/journal.pub", 2, ""),
    "phigate journal verify var/journal --key keys/journal.pub --against s3://evidence/phigate": (
        "journal verify var/journal --key keys/journal.pub --against s3://evidence/phigate", 2,
        "OK: journal"),
    "phigate journal show var/journal --user alice --since 2026-11-01 --decision deny": (
        "journal show var/journal --user alice --since 2026-11-01 --decision deny", 0,
        "SELECT * FROM patients"),
    "phigate journal show var/journal --session 3f1c… --json | jq .": (
        "journal show var/journal --session {session} --json | jq .", 0, '"session_start"'),
    "phigate journal export var/journal --format csv -o journal.csv": (
        "journal export var/journal --format csv -o journal.csv", 0, ""),
    "phigate sessions list -c phigate.yaml --user alice --denied": (
        "sessions list -c phigate.yaml --user alice --denied", 0, "{session8}"),
    "phigate replay -c phigate.yaml SESSION_ID": (
        "replay -c phigate.yaml {session}", 0, "SELECT mrn, last_name FROM patients"),
    "phigate journal prune DIR --key keys/journal.key": (
        "journal prune var/journal --key keys/journal.key", 0, ""),
    "phigate alerts test -c phigate.yaml": ("alerts test -c phigate.yaml", 0, ""),
}
MENTIONS = {"phigate policy", "phigate demo", "phigate journal verify", "phigate serve",
            "phigate login", "phigate access", "phigate drill", "phigate console"}
# README commands that need the OpenID provider (tests/sso/idp): run through the console script,
# the README's provider and gateway replaced by the test ones, by these tests.
ELSEWHERE = {
    'phigate login -c phigate.yaml --exec psql "host=gateway.example.org dbname=clinic"':
        "tests/sso/test_sso_device_login.py::test_login_exec_psql_then_cached_token_and_pgpass",
    "phigate login --issuer https://login.example.org/realms/clinic --client-id phigate "
    "--pgpass gateway.example.org:6432:clinic":
        "tests/sso/test_sso_device_login.py::test_login_exec_psql_then_cached_token_and_pgpass",
    'phigate access request -c phigate.yaml --rule break-glass --reason "INC-4242: ward 3 chart '
    'outage" --duration 2h':
        "tests/access/test_access_e2e.py::test_request_approve_revoke_and_expiry",
    "phigate access list -c phigate.yaml":
        "tests/access/test_access_e2e.py::test_request_approve_revoke_and_expiry",
    "phigate access approve -c phigate.yaml ID":
        "tests/access/test_access_e2e.py::test_request_approve_revoke_and_expiry",
    'phigate access deny -c phigate.yaml ID --reason "use the replica"':
        "tests/access/test_access_e2e.py::test_cli_refusals_and_denial",
    "phigate access revoke -c phigate.yaml ID":
        "tests/access/test_access_e2e.py::test_request_approve_revoke_and_expiry",
    # Served with a live gateway and real traffic (tests/console/conftest.py).
    "phigate console -c phigate.yaml":
        "tests/console/test_http.py::test_login_sets_a_hardened_session_cookie_and_is_journaled",
}
# `phigate demo` (and `make demo`) is run through the console script by tests/e2e/test_demo.py.

ALLOWED_SQL = "SELECT mrn, last_name FROM patients WHERE id = 7"
DENIED_SQL = "SELECT * FROM patients"


def readme_commands() -> set[str]:
    """Every ``phigate …`` the README shows, in fenced shell blocks and in inline code."""
    text = README.read_text(encoding="utf-8")
    found: set[str] = set()
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.startswith("phigate "):
                found.add(_normalise(line.split("  #")[0]))
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`]+)`", prose):
        if span.startswith("phigate "):
            found.add(_normalise(span))
    return found


def _normalise(command: str) -> str:
    return " ".join(command.split())


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]
    session: str = ""

    def run(self, tail: str, stdin: str | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
        command = f"{PHIGATE} {tail.format(session=self.session)}"
        return subprocess.run(command, shell=True, cwd=cwd or self.root, env=self.env,
                              input=stdin, capture_output=True, text=True, timeout=120)


def _config(cluster: ClusterInfo, port: int, verifier: str) -> dict[str, object]:
    return {
        "listen": f"127.0.0.1:{port}",
        "databases": {"clinic": {"host": cluster.host, "port": cluster.port,
                                 "dbname": cluster.database, "user": cluster.service_user,
                                 "password_env": "CLINIC_DB_PASSWORD"}},
        "users": {"alice": {"password": verifier, "groups": ["clinicians"]},
                  "bob": {"password": verifier, "groups": ["engineers"]}},
        "policies": ["examples/policies/clinic.yaml"],
        "journal": {"dir": "var/journal", "signing_key": "keys/journal.key",
                    "checkpoint_copies": ["witness"]},
        "recordings": {"dir": "var/recordings", "key_file": "keys/recordings.key"},
        "alerts": {"sinks": {"ops-log": {"type": "log"}}},
        "limits": {"auth_failure_delay": "50ms"},
    }


@pytest.fixture(scope="module")
def workspace(pg_cluster: ClusterInfo, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Workspace]:
    """The README's layout, filled by the README's own set-up commands, with one recorded
    session of alice (an allowed and a denied statement) served by ``phigate serve``."""
    root = tmp_path_factory.mktemp("readme")
    (root / "keys").mkdir()
    (root / "witness").mkdir()
    (root / "examples").symlink_to(REPO / "examples")
    env = {**os.environ, "CLINIC_DB_PASSWORD": pg_cluster.service_password}
    space = Workspace(root, env)
    for readme in ("phigate keygen keys/journal",
                   "phigate keygen --recording-key keys/recordings.key"):
        assert _ran(space, readme).returncode == 0
    verifier = _ran(space, "phigate passwd", stdin=ALICE_PASSWORD + "\n").stdout.strip()
    port = free_port()
    (root / "phigate.yaml").write_text(yaml.safe_dump(_config(pg_cluster, port, verifier)))
    serve = subprocess.Popen([str(PHIGATE), *COMMANDS[
        "phigate serve -c /etc/phigate/phigate.yaml"][0].split()], cwd=root, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_listening(port, serve)
        done = subprocess.run(
            ["psql", "-X", "-At", "-c", ALLOWED_SQL, "-c", DENIED_SQL,
             f"host=127.0.0.1 port={port} dbname=clinic user=alice sslmode=disable"],
            env={**env, "PGPASSWORD": ALICE_PASSWORD}, capture_output=True, text=True,
            timeout=60)
        assert "no-bulk-export" in done.stderr and done.stdout.count("|") == 1, done
    finally:
        serve.send_signal(signal.SIGTERM)
        output, _ = serve.communicate(timeout=30)
    assert serve.returncode == 0, output
    shown = space.run("journal show var/journal --user alice --json")
    starts = [json.loads(line) for line in shown.stdout.splitlines()
              if json.loads(line)["type"] == "session_start"]
    space.session = str(starts[-1]["session"])
    yield space


def _ran(space: Workspace, readme: str, stdin: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    return space.run(COMMANDS[readme][0], stdin=stdin)


def _wait_listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"phigate serve exited {process.returncode}: "
                               f"{process.communicate()[0]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("phigate serve did not start listening")


def test_every_readme_command_has_a_test() -> None:
    shown = readme_commands()
    assert shown - MENTIONS - set(ELSEWHERE) == set(COMMANDS), \
        "README commands and this table differ"


@pytest.mark.parametrize("readme", sorted(ELSEWHERE))
def test_commands_tested_elsewhere_have_their_test(readme: str) -> None:
    path, name = ELSEWHERE[readme].split("::")
    source = (REPO / path).read_text(encoding="utf-8")
    assert f"def {name}(" in source
    assert readme.split()[1] in source  # the sub-command itself runs there


def test_console_script_is_installed() -> None:
    assert PHIGATE.is_file() and os.access(PHIGATE, os.X_OK)


@pytest.mark.parametrize("readme", sorted(set(COMMANDS) - {
    "phigate serve -c /etc/phigate/phigate.yaml"}))
def test_readme_command(workspace: Workspace, readme: str, tmp_path: Path) -> None:
    tail, expected_code, expected_text = COMMANDS[readme]
    stdin = ALICE_PASSWORD + "\n" if readme == "phigate passwd" else None
    # keygen refuses to overwrite the keys the workspace was set up with: run it afresh.
    fresh = readme.startswith("phigate keygen")
    if fresh:
        (tmp_path / "keys").mkdir()
    done = workspace.run(tail, stdin=stdin, cwd=tmp_path if fresh else None)
    assert done.returncode == expected_code, f"{readme}\n{done.stdout}\n{done.stderr}"
    assert "invalid choice" not in done.stderr and "Traceback" not in done.stderr
    assert expected_text.format(session8=workspace.session[:8]) in done.stdout, done.stdout


def test_export_writes_the_csv_the_readme_names(workspace: Workspace) -> None:
    assert _ran(workspace, "phigate journal export var/journal --format csv -o journal.csv"
                ).returncode == 0
    with (workspace.root / "journal.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert any(row["sql"] == DENIED_SQL and row["decision"] == "deny" for row in rows)
