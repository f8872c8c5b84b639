"""Session recordings end to end: record with psql and asyncpg, list, replay, follow, tamper, crash.

One recorded scenario (module fixture) feeds the golden transcript, ``sessions list`` and the
tamper tests, which work on copies of its files. The follow and crash tests run their own
gateways. Set ``PHIGATE_UPDATE_GOLDEN=1`` to rewrite the golden file after a deliberate change.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from gateway.recording.keys import generate_key_file
from tests.conftest import ClusterInfo
from tests.e2e.harness import IDENTITIES, PHIGATE, REPO, GatewayProcess, psql

GOLDEN = REPO / "tests" / "fixtures" / "recording" / "replay-golden.txt"
CAPTURE_ROWS = 5
POLICY = {
    "phi_tables": [],
    "rules": [
        {"name": "tests-allow-everything", "allow": ["all", "dangerous"]},
        {"name": "recording-tests-no-delete", "deny": ["delete"]},
    ],
}
PSQL_SCRIPT = """\
SELECT id, mrn, last_name FROM patients ORDER BY id LIMIT 3;
SELECT id, last_name FROM patients ORDER BY id LIMIT 12;
SELECT 1/0;
DELETE FROM patients WHERE id = 1;
COPY (SELECT id, mrn FROM patients ORDER BY id LIMIT 7) TO STDOUT;
COPY recording_copy_in FROM STDIN;
1\talpha
2\tbeta
\\.
SELECT count(*) AS copied FROM recording_copy_in;
"""
SMALL_SELECT = "SELECT id, mrn, last_name FROM patients ORDER BY id LIMIT 3;"


def phigate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PHIGATE), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "NO_COLOR": "1"})


def recording_overrides(root: Path, **extra: Any) -> dict[str, Any]:
    key = root / "keys" / "recordings.key"
    if not key.exists():
        generate_key_file(key)
    policy = root / "recording-policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY), encoding="utf-8")
    return {"recordings": {"dir": str(root / "recordings"), "key_file": str(key),
                           "capture_rows": CAPTURE_ROWS, "flush_interval": "200ms", **extra},
            "policies": [str(policy)]}


async def connect(gateway: GatewayProcess) -> asyncpg.Connection:
    return await asyncpg.connect(host="127.0.0.1", port=gateway.port, user="alice",
                                 password=IDENTITIES["alice"].password, database="clinic",
                                 ssl=False)


def run_psql(gateway: GatewayProcess, script: str) -> subprocess.CompletedProcess[str]:
    """psql as a person runs it: default aligned output, errors do not stop the script."""
    return subprocess.run(["psql", "-X", "-d", gateway.dsn("alice")], input=script,
                          capture_output=True, text=True, timeout=60)


def journal_entries(gateway: GatewayProcess, kind: str) -> list[dict[str, Any]]:
    shown = phigate("journal", "show", str(gateway.journal_dir), "--json", "--type", kind)
    assert shown.returncode == 0, shown.stderr
    return [json.loads(line) for line in shown.stdout.splitlines()]


def normalise(transcript: str) -> str:
    """Blank out what changes from run to run: times, ids, ports, sizes, digests."""
    rules = [
        (r"sha256 [0-9a-f]+…, \d+ bytes, \d+ chunks", "sha256 <digest>, <n> bytes, <n> chunks"),
        (r"\b[0-9a-f]{16}\b", "<session>"),
        (r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "<date>"),
        (r"\[\d\d:\d\d:\d\d\]", "[<time>]"),
        (r"ended \d\d:\d\d:\d\d", "ended <time>"),
        (r"after [\d.]+ s", "after <n> s"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<port>"),
    ]
    for pattern, replacement in rules:
        transcript = re.sub(pattern, replacement, transcript)
    return transcript


@dataclass
class Scenario:
    gateway: GatewayProcess
    root: Path
    psql: subprocess.CompletedProcess[str]
    sessions: list[str]  # psql's, then asyncpg's

    @property
    def config(self) -> str:
        return str(self.gateway.config_path)

    @property
    def recordings(self) -> Path:
        return self.root / "recordings"

    def replay(self, session: str, *args: str) -> subprocess.CompletedProcess[str]:
        return phigate("replay", "-c", self.config, session, "--instant", *args)


async def asyncpg_session(gateway: GatewayProcess) -> None:
    conn = await connect(gateway)
    try:
        await conn.fetch("SELECT id, last_name FROM patients WHERE id = $1", 7)
        await conn.execute("SELECT 'simple protocol' AS how")
        with pytest.raises(asyncio.TimeoutError):
            await conn.execute("SELECT pg_sleep(30)", timeout=0.5)
        await conn.fetchval("SELECT 'still usable'")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def scenario(pg_cluster: ClusterInfo, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Scenario]:
    pg_cluster.cluster.execute(
        "DROP TABLE IF EXISTS recording_copy_in; CREATE TABLE recording_copy_in (n int, word text);"
        " GRANT ALL ON recording_copy_in TO phigate_svc", dbname="clinic")
    root = tmp_path_factory.mktemp("recording")
    gateway = GatewayProcess(root / "gw", pg_cluster, recording_overrides(root)).start()
    try:
        psql = run_psql(gateway, PSQL_SCRIPT)
        asyncio.run(asyncpg_session(gateway))
    finally:
        gateway.stop()
    sessions = [e["session"] for e in journal_entries(gateway, "session_start")]
    yield Scenario(gateway, root, psql, sessions)


def test_replay_matches_the_golden_transcript(scenario: Scenario) -> None:
    transcripts = []
    for session in scenario.sessions:
        replayed = scenario.replay(session)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert "access journaled" in replayed.stderr
        transcripts.append(normalise(replayed.stdout))
    actual = "\n".join(transcripts)
    if os.environ.get("PHIGATE_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(actual, encoding="utf-8")
    assert actual == GOLDEN.read_text(encoding="utf-8")


def test_replayed_tables_are_what_psql_printed(scenario: Scenario) -> None:
    printed = scenario.psql.stdout
    table = printed[:printed.index("(3 rows)") + len("(3 rows)")]
    replayed = scenario.replay(scenario.sessions[0]).stdout
    assert table in replayed
    assert "(showing 5 of 12 rows)" in replayed
    assert "ERROR:  division by zero" in scenario.psql.stderr
    assert "ERROR:  division by zero" in replayed


def test_sessions_list_shows_the_sessions(scenario: Scenario) -> None:
    listed = phigate("sessions", "list", "-c", scenario.config, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["session"]: row for row in map(json.loads, listed.stdout.splitlines())}
    psql_session, asyncpg_session_id = scenario.sessions
    assert rows[psql_session]["identity"] == "alice"
    assert rows[psql_session]["client_ip"] == "127.0.0.1"
    assert rows[psql_session]["denials"] == 1 and rows[psql_session]["recorded"]
    assert rows[psql_session]["statements"] == 7 and rows[psql_session]["state"] == "ended"
    assert rows[asyncpg_session_id]["denials"] == 0
    denied = phigate("sessions", "list", "-c", scenario.config, "--denied", "--user", "alice")
    assert denied.returncode == 0 and psql_session in denied.stdout
    assert asyncpg_session_id not in denied.stdout
    assert "SESSION" in denied.stdout.splitlines()[0]
    accesses = journal_entries(scenario.gateway, "audit_access")
    assert {a["action"] for a in accesses} >= {"sessions list", "replay"}
    assert all(a["os_user"] for a in accesses)


def test_journal_binds_every_recording(scenario: Scenario) -> None:
    ends = journal_entries(scenario.gateway, "session_end")
    assert all(len(e["recording"]["sha256"]) == 64 and e["recording"]["chunks"] >= 1
               for e in ends)
    verify = phigate("journal", "verify", str(scenario.gateway.journal_dir), "--key",
                     str(scenario.gateway.public_key), "--recordings", str(scenario.recordings))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "2 verified" in verify.stdout


def tampered_copy(scenario: Scenario, tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """A copy of the config and recordings that can be damaged, and each session's file."""
    recordings = tmp_path / "recordings"
    shutil.copytree(scenario.recordings, recordings)
    config = yaml.safe_load(scenario.gateway.config_path.read_text())
    config["recordings"]["dir"] = str(recordings)
    path = tmp_path / "phigate.yaml"
    path.write_text(yaml.safe_dump(config))
    files = {p.stem: p for p in recordings.rglob("*.phirec")}
    return path, files


@pytest.mark.parametrize("damage", ["edited", "truncated", "deleted"])
def test_tampering_is_detected(scenario: Scenario, tmp_path: Path, damage: str) -> None:
    config, files = tampered_copy(scenario, tmp_path)
    victim = scenario.sessions[0]
    path = files[victim]
    data = bytearray(path.read_bytes())
    if damage == "edited":
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "truncated":
        path.write_bytes(bytes(data[:len(data) - 40]))
    else:
        path.unlink()
    replayed = phigate("replay", "-c", str(config), victim, "--instant")
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    loud = replayed.stdout + replayed.stderr
    assert ("DOES NOT MATCH THE JOURNAL" in loud) or ("RECORDING MISSING" in loud)
    verify = phigate("journal", "verify", str(scenario.gateway.journal_dir), "--key",
                     str(scenario.gateway.public_key), "--recordings", str(path.parent.parent))
    assert verify.returncode == 1
    assert f"RECORDING TAMPERED: session {victim}" in verify.stdout
    assert scenario.sessions[1] not in verify.stdout  # the other recording is fine


def test_recordings_cannot_be_read_without_the_key(scenario: Scenario, tmp_path: Path) -> None:
    config = yaml.safe_load(scenario.gateway.config_path.read_text())
    config["recordings"]["key_file"] = str(tmp_path / "absent.key")
    no_key = tmp_path / "no-key.yaml"
    no_key.write_text(yaml.safe_dump(config))
    replayed = phigate("replay", "-c", str(no_key), scenario.sessions[0])
    assert replayed.returncode == 2
    assert "cannot read recording key" in replayed.stderr and "encrypted" in replayed.stderr
    assert not replayed.stdout
    generate_key_file(tmp_path / "other.key")
    config["recordings"]["key_file"] = str(tmp_path / "other.key")
    no_key.write_text(yaml.safe_dump(config))
    replayed = phigate("replay", "-c", str(no_key), scenario.sessions[0])
    assert replayed.returncode == 2 and "not the key given" in replayed.stderr
    assert not replayed.stdout


def latest_session(gateway: GatewayProcess) -> str:
    return str(journal_entries(gateway, "session_start")[-1]["session"])


class Lines:
    """A subprocess's stdout, collected line by line on a thread so a test can wait for text."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.text = ""
        self._process = process
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.text += line

    async def wait_for(self, needle: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            assert time.monotonic() < deadline, f"{needle!r} never appeared in:\n{self.text}"
            await asyncio.sleep(0.05)


async def test_follow_shows_a_live_session_as_it_happens(
        start_gateway: Any, tmp_path: Path) -> None:
    gateway = start_gateway(recording_overrides(tmp_path))
    conn = await connect(gateway)
    await conn.execute("SELECT 'before the auditor arrived' AS phase")
    session = latest_session(gateway)
    with subprocess.Popen(
            [str(PHIGATE), "replay", "-c", str(gateway.config_path),
             session, "--follow", "--as", "auditor-carol"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "NO_COLOR": "1"}) as follower:
        try:
            lines = Lines(follower)
            await lines.wait_for("before the auditor arrived")
            await conn.execute("SELECT 'while being followed' AS phase")
            await lines.wait_for("while being followed")
            assert "session ended" not in lines.text
        finally:
            await conn.close()
        assert follower.wait(timeout=15) == 0
        await lines.wait_for("session ended")
    assert "recording verified" in lines.text.splitlines()[-1]
    accesses = [a for a in journal_entries(gateway, "audit_access") if a.get("session") == session]
    assert accesses[0]["as"] == "auditor-carol" and accesses[0]["via"] == "spool"


async def test_a_crash_keeps_what_was_flushed(start_gateway: Any, tmp_path: Path) -> None:
    gateway = start_gateway(recording_overrides(tmp_path))
    conn = await connect(gateway)
    await conn.execute("SELECT 'flushed before the crash' AS phase")
    session = latest_session(gateway)
    await asyncio.sleep(0.8)  # several flush intervals
    assert gateway.process is not None
    gateway.process.send_signal(signal.SIGKILL)
    gateway.process.wait()
    conn.terminate()
    replayed = phigate("replay", "-c", str(gateway.config_path), session, "--instant")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "flushed before the crash" in replayed.stdout
    assert "INCOMPLETE" in replayed.stdout and "-- session ended" not in replayed.stdout
    assert "journaled as entry" in replayed.stderr  # no gateway: the CLI appended itself
    verify = phigate("journal", "verify", str(gateway.journal_dir), "--key",
                     str(gateway.public_key), "--recordings", str(tmp_path / "recordings"))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "1 incomplete" in verify.stdout


def test_the_gateway_will_not_start_without_its_recording_key(
        pg_cluster: ClusterInfo, tmp_path: Path) -> None:
    overrides = recording_overrides(tmp_path)
    overrides["recordings"]["key_file"] = str(tmp_path / "missing.key")
    with pytest.raises(RuntimeError, match="cannot read recording key"):
        GatewayProcess(tmp_path / "gw", pg_cluster, overrides).start()


def test_reading_a_live_journal_is_itself_journaled(start_gateway: Any) -> None:
    gateway = start_gateway()
    assert psql(gateway, "SELECT 1").returncode == 0
    shown = subprocess.run(
        [str(PHIGATE), "journal", "show", str(gateway.journal_dir),
         "--user", "alice", "--as", "auditor-ann"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "journaled by the running gateway" in shown.stderr
    gateway.stop()
    accesses = [json.loads(line) for line in subprocess.run(
        [str(PHIGATE), "journal", "show", str(gateway.journal_dir),
         "--json", "--type", "audit_access"],
        cwd=REPO, capture_output=True, text=True, timeout=60).stdout.splitlines()]
    assert [(a["action"], a.get("as"), a["filters"]) for a in accesses] == [
        ("journal show", "auditor-ann", {"user": "alice"})]
