"""One real deployment for the console tests: ``phigate serve`` with real traffic, a console.

The gateway (clinic policy, recordings on) journals what psql (alice, a clinician, reading
PHI and refused a DELETE; sixty small lookups for paging) and psycopg (bob, an engineer,
refused the patients table) did against the suite's PostgreSQL. The console is the installed
``phigate console`` over the same config; the gateway keeps running, so every view of PHI is
journaled through its spool. carol (group ``compliance``) and dana (named) are auditors.
``sso`` is a second console over the same config that also signs people in with the real
OpenID provider (``idp``): priya (group ``compliance``) and carol@clinic.example (named).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from gateway.journal import segments
from gateway.recording.keys import generate_key_file
from protocols.postgres.scram import make_verifier
from tests.conftest import ClusterInfo
from tests.console.harness import ConsoleProcess
from tests.e2e.harness import CLINIC_POLICY, PHIGATE, GatewayProcess, deep_merge, free_port
from tests.sso.idp import IdentityProvider

CALLBACK = "/login/sso/callback"
AUDITORS = {"carol": "carol-reviews-access", "dana": "dana-privacy-officer",
            "erin": "erin-gets-rate-limited"}
ALICE_SCRIPT = """\
SELECT id, mrn, last_name FROM patients ORDER BY id LIMIT 3;
SELECT pg_sleep(1);
SELECT count(*) AS visits FROM encounters;
DELETE FROM patients WHERE id = 1;
SELECT 'alice was here' AS note;
"""
LOOKUPS = 60


@dataclass
class Deployment:
    root: Path
    gateway: GatewayProcess
    console: ConsoleProcess
    alice_session: str
    bob_session: str

    @property
    def config(self) -> dict[str, Any]:
        return self.gateway.config

    def entries(self, kind: str) -> list[dict[str, Any]]:
        return journal_entries(self.gateway, kind)


def journal_entries(gateway: GatewayProcess, kind: str) -> list[dict[str, Any]]:
    """``phigate journal show --json --type KIND`` of the gateway's journal."""
    shown = subprocess.run([str(PHIGATE), "journal", "show", str(gateway.journal_dir),
                            "--json", "--type", kind], capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    return [json.loads(line) for line in shown.stdout.splitlines()]


def console_overrides(root: Path, port: int, **console: Any) -> dict[str, Any]:
    key = root / "keys" / "recordings.key"
    if not key.exists():
        generate_key_file(key)
    return {
        "policies": [str(CLINIC_POLICY)],
        "users": {name: {"password": make_verifier(password),
                         "groups": ["compliance"] if name == "carol" else []}
                  for name, password in AUDITORS.items()},
        "recordings": {"dir": str(root / "recordings"), "key_file": str(key),
                       "capture_rows": 5, "flush_interval": "100ms"},
        "alerts": {"sinks": {"ops-log": {"type": "log"}},
                   "rules": [{"name": "denials", "when": "denied", "sinks": ["ops-log"]}]},
        "console": {"listen": f"127.0.0.1:{port}", "auditors": ["compliance", "dana", "erin"],
                    "index": str(root / "console-index.sqlite3"), **console},
    }


def _traffic(gateway: GatewayProcess) -> None:
    lookups = "".join(f"SELECT id FROM patients WHERE id = {i};\n" for i in range(1, LOOKUPS + 1))
    ran = subprocess.run(["psql", "-X", "-d", gateway.dsn("alice")], input=ALICE_SCRIPT,
                         capture_output=True, text=True, timeout=60)
    assert "alice was here" in ran.stdout and "DELETE" not in ran.stdout, ran
    ran = subprocess.run(["psql", "-X", "-q", "-d", gateway.dsn("alice")], input=lookups,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    with psycopg.connect(gateway.dsn("bob"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT last_name FROM patients LIMIT 1")
        assert conn.execute("SELECT 'engineer probe' AS probe").fetchone() == ("engineer probe",)


@pytest.fixture(scope="package")
def deployment(pg_cluster: ClusterInfo, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("console")
    port = free_port()
    gateway = GatewayProcess(root / "gw", pg_cluster, console_overrides(root, port)).start()
    console = None
    try:
        _traffic(gateway)
        # Session ends are journaled just after each client leaves: wait for all three.
        ends = wait_until(lambda: len(found := journal_entries(gateway, "session_end")) >= 3
                          and found)
        first = {e["identity"]: e["session"] for e in reversed(ends)}
        console = ConsoleProcess(gateway.config_path, port, root / "console.log").start()
        yield Deployment(root, gateway, console, first["alice"], first["bob"])
    finally:
        if console is not None:
            console.stop()
        gateway.stop()


ORIGINAL, FORGED = b"alice was here", b"alice was gone"


def second_console(deployment: Deployment, name: str, **console: Any) -> ConsoleProcess:
    port = free_port()
    config = deep_merge(deployment.config, {"console": {
        "listen": f"127.0.0.1:{port}", "index": str(deployment.root / f"{name}.sqlite3"),
        **console}})
    path = deployment.root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return ConsoleProcess(path, port, deployment.root / f"{name}.log",
                          tls="tls" in console).start()


def tampered_copy(deployment: Deployment) -> tuple[Path, int]:
    """The journal copied aside, one statement's SQL altered; the altered entry's seq."""
    copy = deployment.root / "journal-copy"
    shutil.copytree(deployment.gateway.journal_dir, copy,
                    ignore=shutil.ignore_patterns("spool", "*.lock", "lock"))
    for segment in segments.list_segments(copy):
        data = segment.path.read_bytes()
        if ORIGINAL in data:
            line = data[data.rindex(b"\n", 0, data.index(ORIGINAL)) + 1:]
            seq = json.loads(line[:line.index(b"\n")])["seq"]
            segment.path.write_bytes(data.replace(ORIGINAL, FORGED))
            return copy, seq
    raise AssertionError("the statement to alter is not in the journal")


@dataclass
class Offline:
    console: ConsoleProcess
    copy: Path
    altered_seq: int


@pytest.fixture(scope="package")
def offline(deployment: Deployment) -> Iterator[Offline]:
    """A second console, on a copy of the journal with one statement's SQL altered."""
    copy, seq = tampered_copy(deployment)
    console = second_console(deployment, "offline", journal=str(copy))
    yield Offline(console, copy, seq)
    console.stop()


def wait_until(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@dataclass
class SsoConsole:
    console: ConsoleProcess
    client_id: str
    redirect_uri: str


def sso_config(deployment: Deployment, idp: IdentityProvider, port: int,
               **console_sso: Any) -> dict[str, Any]:
    return deep_merge(deployment.config, {
        "sso": {"issuer": idp.issuer, "client_id": "phigate", "ca": str(idp.ca), "leeway": "0s"},
        # Three refusals per (name, address); the address limit stays out of the way.
        "limits": {"auth_failure_delay": "10ms", "auth_max_failures": 3,
                   "auth_max_failures_per_ip": 1000},
        "console": {"listen": f"127.0.0.1:{port}",
                    "index": str(deployment.root / f"sso-{port}.sqlite3"),
                    "auditors": ["compliance", "dana", "carol@clinic.example"],
                    "sso": console_sso}})


def start_console(deployment: Deployment, config: dict[str, Any], port: int) -> ConsoleProcess:
    path = deployment.root / f"sso-{port}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return ConsoleProcess(path, port, deployment.root / f"sso-{port}.log").start()


@pytest.fixture(scope="package")
def sso(deployment: Deployment, idp: IdentityProvider) -> Iterator[SsoConsole]:
    port = free_port()
    redirect_uri = f"http://127.0.0.1:{port}{CALLBACK}"
    client_id, secret = idp.register_web_client(redirect_uri)
    secret_file = deployment.root / "console-client-secret"
    secret_file.write_text(secret + "\n", encoding="utf-8")
    secret_file.chmod(0o600)
    config = sso_config(deployment, idp, port, redirect_uri=redirect_uri, client_id=client_id,
                        client_secret_file=str(secret_file), provider_name="Clinic SSO")
    console = start_console(deployment, config, port)
    yield SsoConsole(console, client_id, redirect_uri)
    console.stop()
