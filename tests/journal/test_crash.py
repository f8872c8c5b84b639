"""Crash safety: SIGKILL a writer at random points; every acknowledged entry survives."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.journal import Journal, JournalSettings
from gateway.journal.reader import iter_entries
from gateway.journal.verify import verify_journal

from .conftest import REPO


def run_until_killed(directory: Path, key: Path, run: str, after: float) -> list[tuple[int, str]]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-m", "tests.journal.crash_child", str(directory),
                              str(key), run], stdout=subprocess.PIPE, env=env, cwd=REPO)
    assert child.stdout is not None
    acknowledged: list[tuple[int, str]] = []

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            if line.endswith(b"\n"):  # a line cut by the kill was never acknowledged
                seq, token = line.decode().split()
                acknowledged.append((int(seq), token))

    reader = threading.Thread(target=read, name=f"crash-reader-{run}")
    reader.start()
    deadline = time.monotonic() + 10
    # Kill at a random moment once writing is under way (sometimes during start-up).
    while not acknowledged and after > 0.3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(after)
    child.send_signal(signal.SIGKILL)
    child.wait()
    reader.join()
    child.stdout.close()
    return acknowledged


def test_acknowledged_entries_survive_sigkill(tmp_path: Path, keypair: tuple[Path, Path],
                                              public_key: Ed25519PublicKey) -> None:
    directory = tmp_path / "journal"
    rng = random.Random(os.environ.get("CRASH_SEED", "phigate"))
    acknowledged: dict[int, str] = {}
    for run in range(6):
        got = run_until_killed(directory, keypair[0], f"r{run}", rng.uniform(0.05, 0.6))
        for seq, token in got:
            assert acknowledged.setdefault(seq, token) == token, "a seq was acknowledged twice"
    assert len(acknowledged) > 100, "the child should have written for a while"

    settings = JournalSettings(dir=directory, signing_key=keypair[0], immutable=False)

    async def reopen() -> None:
        journal = await Journal.open(settings)
        await journal.close()

    asyncio.run(reopen())
    stored = {e.seq: e.fields.get("token") for e in iter_entries(directory)
              if e.fields["type"] == "statement"}
    missing = {seq: token for seq, token in acknowledged.items() if stored.get(seq) != token}
    assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"
    report = verify_journal(directory, public_key)
    assert report.ok, report.summary()
    recoveries = [json.loads(e.raw) for e in iter_entries(directory)
                  if e.fields["type"] == "recovery"]
    for recovery in recoveries:
        assert (directory / recovery["quarantine"]).exists()
