"""The journal through the gateway: write-ahead, verifiable, searchable, fail-closed."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import IDENTITIES, PHIGATE, REPO, GatewayProcess, psql


def phigate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PHIGATE), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def entries(gateway: GatewayProcess, *filters: str) -> list[dict[str, object]]:
    result = phigate("journal", "show", str(gateway.journal_dir), "--json", *filters)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_psql_session_is_journaled_and_verifies(start_gateway: Callable[..., GatewayProcess]
                                                 ) -> None:
    gateway = start_gateway()
    script = "SELECT count(*) FROM patients;\nSELECT 1/0;\nSELECT mrn FROM patients WHERE id = 7;\n"
    result = psql(gateway, args=("-v", "ON_ERROR_STOP=0"), stdin=script)
    assert "division by zero" in result.stderr
    assert psql(gateway, "SELECT 'bob was here'", user="bob").returncode == 0
    assert gateway.stop() == 0

    statements = entries(gateway, "--user", "alice", "--type", "statement")
    assert [s["sql"] for s in statements] == [line for line in script.splitlines()]
    # Journal format 2: each statement says who, from where and on which database itself.
    assert {(s["identity"], s["database"]) for s in statements} == {("alice", "clinic")}
    assert all(str(s["client"]).startswith("127.0.0.1:") for s in statements)
    sessions = entries(gateway, "--user", "alice", "--type", "session_start")
    assert len(sessions) == 1 and str(sessions[0]["client"]).startswith("127.0.0.1:")
    assert sessions[0]["identity"] == "alice" and sessions[0]["groups"] == ["clinicians"]
    outcomes = entries(gateway, "--user", "alice", "--type", "outcome")
    assert [o["sqlstate"] for o in outcomes] == [None, "22012", None]
    assert [o["rows"] for o in outcomes] == [1, 0, 1]
    assert all(isinstance(o["duration_ms"], float) for o in outcomes)
    auth = entries(gateway, "--type", "auth")
    assert {(a["user"], a["success"]) for a in auth} == {("alice", True), ("bob", True)}
    assert entries(gateway, "--type", "session_end")

    verify = phigate("journal", "verify", str(gateway.journal_dir), "--key",
                     str(gateway.public_key), "--checkpoints", str(gateway.workdir / "witness"))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_failed_logins_are_journaled(start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway()
    psql(gateway, "SELECT 1", user="alice", password="wrong")
    psql(gateway, "SELECT 1", user="mallory", password="guess")
    gateway.stop()
    failures = [a for a in entries(gateway, "--type", "auth") if not a["success"]]
    assert {a["user"] for a in failures} == {"alice", "mallory"}


async def test_extended_protocol_parameters_are_digested(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway()
    conn = await asyncpg.connect(host="127.0.0.1", port=gateway.port, user="alice",
                                 password=IDENTITIES["alice"].password, database="clinic",
                                 ssl=False)
    try:
        await conn.fetch("SELECT mrn FROM patients WHERE last_name = $1", "Nguyen")
        await conn.fetch("SELECT mrn FROM patients WHERE last_name = $1", "Nguyen")
    finally:
        await conn.close()
    gateway.stop()
    statements = [s for s in entries(gateway, "--type", "statement")
                  if "last_name" in str(s["sql"])]
    assert len(statements) == 2
    assert all(s["protocol"] == "extended" for s in statements)
    digests = [s["parameters"] for s in statements]
    assert digests[0] == digests[1]  # equal values correlate …
    assert "Nguyen" not in json.dumps(digests)  # … without being stored


def test_journal_full_refuses_statements_and_nothing_reaches_the_database(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo,
        tmp_path: Path) -> None:
    mount = tmp_path / "tiny"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        gateway = start_gateway({"journal": {"dir": str(mount / "journal")}})
        pg_cluster.cluster.execute("CREATE TABLE IF NOT EXISTS journal_probe (n int); "
                                   "TRUNCATE journal_probe; "
                                   "GRANT ALL ON journal_probe TO phigate_svc", dbname="clinic")
        filler = mount / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=1000"],
                       capture_output=True)
        # Small entries still fit in the journal file's last page; keep going until refused.
        script = "".join(f"INSERT INTO journal_probe VALUES ({n});\n" for n in range(300))
        result = psql(gateway, args=("-v", "ON_ERROR_STOP=0", "-v", "VERBOSITY=verbose"),
                      stdin=script)
        refused = result.stderr.count("53100")
        assert refused > 0, result.stderr
        stored = int(pg_cluster.cluster.execute("SELECT count(*) FROM journal_probe",
                                                dbname="clinic"))
        assert stored + refused == 300  # every refused statement never reached the database
        pg_cluster.cluster.execute("TRUNCATE journal_probe", dbname="clinic")
        filler.unlink()
        deadline = 0
        while deadline < 50:
            result = psql(gateway, "INSERT INTO journal_probe VALUES (2)")
            if result.returncode == 0:
                break
            deadline += 1
            asyncio.run(asyncio.sleep(0.2))
        assert result.returncode == 0, result.stderr
        assert pg_cluster.cluster.execute("SELECT array_agg(n) FROM journal_probe",
                                          dbname="clinic").strip() == "{2}"
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
