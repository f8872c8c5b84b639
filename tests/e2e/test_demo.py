"""``phigate demo`` end to end: start it, connect with psql using the printed password, Ctrl-C it.

Runs the real command in a subprocess, reads the connection instructions from its stdout, checks
that the example policy is in force (an allowed read, a denied one), and that SIGINT leaves no
PostgreSQL process and no temporary directory behind.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.demo.tempcluster import PostgresNotFound, find_bindir
from tests.e2e.harness import PHIGATE, REPO, free_port

READY_LINE = "Ctrl-C to stop"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0


@pytest.fixture(scope="module", autouse=True)
def _postgres_installed() -> None:
    try:
        find_bindir()
    except PostgresNotFound as e:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {e}")
        pytest.skip(f"PostgreSQL not installed: {e}")
    if shutil.which("psql") is None:
        if os.environ.get("CI"):
            pytest.fail("psql is required in CI")
        pytest.skip("psql not installed")


class DemoProcess:
    """The demo subprocess with its stdout collected line by line on a thread."""

    def __init__(self, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self.process = subprocess.Popen(
            [str(PHIGATE), "demo", "--port", str(port)], cwd=REPO,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self._pump_thread = threading.Thread(target=self._pump, name="demo-stdout", daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def read_until(self, marker: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            self.output.append(line)
            if marker in line:
                return "".join(self.output)
        raise AssertionError(f"demo never printed {marker!r}:\n{''.join(self.output)}")

    def stop(self, timeout: float) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._pump_thread.join(5.0)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def demo() -> Iterator[DemoProcess]:
    process = DemoProcess(free_port())
    yield process
    process.close()


def _psql(port: int, user: str, password: str, sql: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PG")},
           "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"}
    return subprocess.run(
        ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
         f"host=127.0.0.1 port={port} dbname=clinic user={user} sslmode=disable", "-c", sql],
        capture_output=True, text=True, env=env, timeout=30)


def _processes_mentioning(path: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if path in args:
            found.append(args)
    return found


def test_demo_serves_printed_credentials_and_cleans_up_on_ctrl_c(demo: DemoProcess) -> None:
    text = demo.read_until(READY_LINE, START_TIMEOUT_S)
    match = re.search(r'psql "host=127\.0\.0\.1 port=(\d+) dbname=clinic user=alice"', text)
    assert match, text
    port = int(match.group(1))
    passwords = dict(re.findall(r"password for (\w+): (\S+)", text))
    assert set(passwords) == {"alice", "bob", "oncall"}
    data_root = re.search(r"data and server\.log in (\S+)", text)
    config = re.search(r"config (\S+/phigate\.yaml)", text)
    assert data_root and config, text

    alice = _psql(port, "alice", passwords["alice"], "SELECT count(*) FROM patients")
    assert alice.returncode == 0, alice.stderr
    assert alice.stdout.strip() == "2000"  # more patients than the clinicians' max_rows
    cut = _psql(port, "alice", passwords["alice"], "SELECT mrn FROM patients WHERE id > 0")
    assert cut.returncode != 0
    assert "exceeds max_rows (500)" in cut.stderr, cut.stderr
    bob = _psql(port, "bob", passwords["bob"], "SELECT count(*) FROM departments")
    assert (bob.returncode, bob.stdout.strip()) == (0, "7"), bob.stderr
    denied = _psql(port, "bob", passwords["bob"], "SELECT * FROM patients WHERE id = 1")
    assert denied.returncode != 0
    assert "phigate: rule engineers-no-phi" in denied.stderr
    wrong = _psql(port, "alice", passwords["bob"], "SELECT 1")
    assert wrong.returncode != 0
    assert "password authentication failed" in wrong.stderr

    assert demo.stop(STOP_TIMEOUT_S) == 0
    output = demo.read_until("Demo stopped", 5.0)
    assert not Path(data_root.group(1)).exists(), output
    assert not Path(config.group(1)).parent.exists(), output
    assert _processes_mentioning(data_root.group(1)) == []
