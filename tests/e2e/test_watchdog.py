"""The watchdog (``limits.watchdog_timeout``): ends only sessions that cannot make progress.

Through ``phigate serve`` with a tight limit, everything that legitimately waits keeps working:
a long query, a lock wait, a transaction left idle, an extended batch whose Sync comes late,
a COPY whose data comes late. In-process, with a plug-in hook that never returns (a gateway
bug), the session is ended with XX000, its state logged and journaled, and another session
keeps answering.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
import yaml

from gateway.proxy.hooks import Hook, Statement, Verdict
from gateway.proxy.server import Gateway
from gateway.service import build_hooks, open_journal
from gateway.settings.config import load_config
from protocols.postgres import messages as m
from protocols.postgres.encoder import encode
from protocols.postgres.framing import FrameBuffer
from tests.conftest import ClusterInfo
from tests.e2e.harness import IDENTITIES, PHIGATE, REPO, GatewayProcess, base_config, free_port
from tests.e2e.test_fastpath import until_ready
from tests.e2e.test_robustness import _authenticated_socket

LIMIT = {"limits": {"watchdog_timeout": "300ms"}}


def test_legitimate_waits_are_left_alone(start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway(LIMIT)
    with _authenticated_socket(gateway) as sock, _authenticated_socket(gateway) as other:
        buffer, other_buffer = FrameBuffer(), FrameBuffer()
        sock.sendall(encode(m.Query("SELECT pg_sleep(1.2)")))  # the database is working
        assert not _errors(until_ready(sock, buffer))
        sock.sendall(encode(m.Query("CREATE TEMP TABLE w (a int); BEGIN")))
        until_ready(sock, buffer)
        time.sleep(1.0)  # idle in transaction: nothing is owed
        sock.sendall(encode(m.Query("LOCK TABLE w")))
        until_ready(sock, buffer)
        sock.sendall(b"".join(encode(x) for x in (  # a batch whose Sync comes late
            m.Parse("", "SELECT 1", ()), m.Bind("", "", (), (), ()), m.Execute("", 0))))
        time.sleep(1.0)
        sock.sendall(encode(m.Sync()))
        assert not _errors(until_ready(sock, buffer))
        sock.sendall(encode(m.Query("COPY w FROM STDIN")))  # data that comes late
        time.sleep(1.0)
        sock.sendall(encode(m.CopyData(b"1\n")) + encode(m.CopyDone()))
        assert not _errors(until_ready(sock, buffer))
        other.sendall(encode(m.Query("SELECT count(*) FROM pg_class")))
        until_ready(other, other_buffer)
        sock.sendall(encode(m.Query("COMMIT")))
        assert not _errors(until_ready(sock, buffer))
    assert gateway.stop() == 0
    assert "watchdog" not in gateway.log()


def _errors(messages: list[object]) -> list[object]:
    return [x for x in messages if isinstance(x, m.ErrorResponse)]


class NeverReturns(Hook):
    """A plug-in with a bug: it never finishes deciding statements that mention 'hang-me'."""

    async def before_statement(self, statement: Statement) -> Verdict | None:
        if "hang-me" in statement.sql:
            await asyncio.Event().wait()
        return None


async def test_a_session_stuck_in_the_gateway_is_ended_and_journaled(
        pg_cluster: ClusterInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    config = base_config(pg_cluster, free_port(), tmp_path)
    config["limits"]["watchdog_timeout"] = "300ms"
    path = tmp_path / "phigate.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.setenv("CLINIC_DB_PASSWORD", pg_cluster.service_password)
    settings = load_config(path)
    journal = await open_journal(settings)
    gateway = Gateway(settings, [*build_hooks(settings, journal), NeverReturns()])
    await gateway.start()
    try:
        other = await asyncpg.connect(host="127.0.0.1", port=gateway.port, user="bob",
                                      database="clinic", ssl=False,
                                      password=IDENTITIES["bob"].password)
        dsn = (f"host=127.0.0.1 port={gateway.port} dbname=clinic user=alice sslmode=disable "
               f"password={IDENTITIES['alice'].password}")
        stuck = asyncio.create_task(asyncio.to_thread(
            subprocess.run, ["psql", "-X", "-v", "VERBOSITY=verbose", "-d", dsn, "-c",
                             "SELECT 'hang-me'"], capture_output=True, text=True, timeout=30))
        await asyncio.sleep(0.1)
        assert await other.fetchval("SELECT 'answering meanwhile'") == "answering meanwhile"
        result = await stuck
        assert result.returncode == 2 and "XX000" in result.stderr, result.stderr
        assert "no answer after 0.3 s" in result.stderr
        assert await other.fetchval("SELECT 'still answering'") == "still answering"
        await other.close()
    finally:
        await gateway.drain(0)
        await journal.close()
    assert any("watchdog" in r.getMessage() for r in caplog.records)
    shown = subprocess.run([str(PHIGATE), "journal", "show", str(tmp_path / "journal"), "--json",
                            "--type", "session_end"], cwd=REPO, capture_output=True, text=True,
                           timeout=60)
    ends = [json.loads(line) for line in shown.stdout.splitlines()]
    [ended] = [e for e in ends if e["end"] == "watchdog"]
    assert ended["identity"] == "alice" and ended["watchdog"]["in_hooks_statement"] == 1
    assert [e["end"] for e in ends if e["identity"] == "bob"] != ["watchdog"]

