"""Read-only statements run while their entry is made durable; no byte of the answer first.

Against ``phigate serve`` (subprocess) and the real PostgreSQL. Faults are real too: the
live journal segment is made immutable (``chattr +i``), so the gateway's next write fails
with EPERM exactly as a failing disk would. What the client received is captured by a byte
recorder between psycopg and the gateway.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from gateway.journal import segments
from tests.conftest import ClusterInfo
from tests.e2e.harness import GatewayProcess, phigate_json, phigate_verify
from tests.e2e.tcp_relay import ThreadedRelay

SECRET_QUERY = "SELECT '{token}' AS mrn, count(*) FROM generate_series(1, 3000000)"


class Recorder(ThreadedRelay):
    """Keeps every byte the gateway sends the client."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.received = bytearray()

    def to_client(self, data: bytes) -> None:
        self.received += data

    def dsn(self, gateway: GatewayProcess) -> str:
        return gateway.dsn().replace(f"port='{gateway.port}'", f"port='{self.port}'")


def data_rows(received: bytes) -> int:
    """DataRow messages in what the server side sent (after start-up: type byte + length)."""
    count, pos = 0, 0
    while pos + 5 <= len(received):
        kind, length = received[pos], int.from_bytes(received[pos + 1:pos + 5], "big")
        count += kind == ord("D")
        pos += 1 + length
    return count


@contextlib.contextmanager
def failing_journal(gateway: GatewayProcess) -> Iterator[None]:
    """The live segment refuses writes (EPERM), as a failing disk would, until restored."""
    newest = segments.list_segments(gateway.journal_dir)[-1].path
    if not segments.set_immutable(newest, True):
        pytest.fail("cannot chattr +i the journal segment (needs root on ext4/xfs)")
    try:
        yield
    finally:
        segments.set_immutable(newest, False)


@contextlib.contextmanager
def watching_upstream(cluster: ClusterInfo, token: str) -> Iterator[list[bool]]:
    """Yields a list that becomes non-empty once the database runs a query naming ``token``."""
    stop, found = threading.Event(), []

    def watch() -> None:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            while not stop.is_set() and not found:
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s "
                                   "AND pid <> pg_backend_pid()", (f"%{token}%",)).fetchone()
                found.append(True) if row and row[0] else time.sleep(0.005)

    watcher = threading.Thread(target=watch, name="upstream-watcher")
    watcher.start()
    try:
        yield found
    finally:
        stop.set()
        watcher.join()


@pytest.fixture
def scratch(pg_cluster: ClusterInfo) -> str:
    table = f"held_{uuid.uuid4().hex[:8]}"
    pg_cluster.cluster.execute(
        f"CREATE TABLE {table} (token text);\n"
        f"GRANT SELECT, INSERT ON {table} TO {pg_cluster.service_user};\n",
        dbname=pg_cluster.database)
    return table


def test_a_failing_journal_discloses_nothing_of_a_forwarded_read(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo) -> None:
    gateway = start_gateway()
    token = f"secret-{uuid.uuid4().hex}"
    with Recorder(gateway.port) as recorder, psycopg.connect(recorder.dsn(gateway)) as conn:
        assert conn.execute("SELECT 'warm-up'").fetchone() == ("warm-up",)
        before = len(recorder.received)
        with watching_upstream(pg_cluster, token) as found, failing_journal(gateway), \
                pytest.raises(psycopg.Error) as caught:
            conn.execute(SECRET_QUERY.format(token=token)).fetchall()
        answer = bytes(recorder.received[before:])
    assert caught.value.sqlstate == "58030", caught.value
    assert found, "the read-only statement ran upstream before its entry was durable"
    assert token.encode() not in answer and data_rows(answer) == 0
    assert answer[:1] == b"E" and b"FATAL" in answer  # the journal's error, then EOF
    gateway.stop()
    statements = phigate_json(gateway, "--type", "statement")
    assert not any(token in str(s.get("sql")) for s in statements)


def test_a_write_still_waits_for_its_entry(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo,
        scratch: str) -> None:
    gateway = start_gateway()
    token = f"write-{uuid.uuid4().hex}"
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        with failing_journal(gateway), pytest.raises(psycopg.Error) as caught:
            conn.execute(f"INSERT INTO {scratch} VALUES ('{token}')")
        assert caught.value.sqlstate == "58030"
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as direct:
        rows = direct.execute(f"SELECT count(*) FROM {scratch} WHERE token = %s",
                              (token,)).fetchone()
    assert rows == (0,), "a write reached the database before its entry was durable"


def _client(gateway: GatewayProcess, table: str, worker: int, stop: threading.Event,
            got: list[str]) -> None:
    with contextlib.suppress(psycopg.Error), psycopg.connect(gateway.dsn(),
                                                             autocommit=True) as conn:
        for i in range(1_000_000):
            if stop.is_set():
                return
            token = f"k{worker}-{i}-{uuid.uuid4().hex[:6]}"
            if i % 4 == 3:
                conn.execute(f"INSERT INTO {table} VALUES ('{token}')")
                got.append(token)  # acknowledged
            else:
                row = conn.execute(f"SELECT '{token}'").fetchone()
                if row is not None:
                    got.append(str(row[0]))  # disclosed


def test_kill_9_loses_no_acknowledged_entry_and_discloses_nothing_unjournaled(
        start_gateway: Callable[..., GatewayProcess], scratch: str) -> None:
    rng = random.Random(os.environ.get("CRASH_SEED", "held"))
    received: list[str] = []
    for run in range(3):
        gateway = start_gateway(name=f"kill{run}")
        stop = threading.Event()
        got: list[str] = []
        clients = [threading.Thread(target=_client, args=(gateway, scratch, w, stop, got))
                   for w in range(6)]
        for client in clients:
            client.start()
        deadline = time.monotonic() + 20
        while len(got) < 6 and time.monotonic() < deadline:  # kill once all are busy
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGKILL)
        gateway.process.wait()
        stop.set()
        for client in clients:
            client.join()
        assert got, "no statement completed before the kill"
        # The next start recovers the journal (zero tail, maybe a torn line) and it verifies.
        gateway.start().stop()
        verified = phigate_verify(gateway)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        journaled = "\n".join(str(s.get("sql"))
                              for s in phigate_json(gateway, "--type", "statement"))
        missing = [token for token in got if token not in journaled]
        assert not missing, f"answered or acknowledged without a durable entry: {missing[:5]}"
        received += got
    assert len(received) > 30


def test_overlap_reads_off_keeps_every_statement_write_ahead(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo) -> None:
    gateway = start_gateway({"journal": {"overlap_reads": False}})
    token = f"strict-{uuid.uuid4().hex}"
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        with watching_upstream(pg_cluster, token) as found, failing_journal(gateway), \
                pytest.raises(psycopg.Error) as caught:
            conn.execute(SECRET_QUERY.format(token=token)).fetchall()
        assert caught.value.sqlstate == "58030" and not found, "it never reached the database"
        time.sleep(0.15)  # the journal retries the disk after writer.RETRY_AFTER_S
        assert conn.execute("SELECT 'still here'").fetchone() == ("still here",)
