"""Shared fixtures for the journal tests: a key pair, settings, a sample journal, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.journal import Journal, JournalSettings
from gateway.journal.canonical import encode_line
from gateway.journal.chain import genesis, link
from gateway.journal.keys import generate, load_public
from tests.e2e.harness import PHIGATE

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return generate(tmp_path_factory.mktemp("keys") / "journal")


@pytest.fixture(scope="session")
def public_key(keypair: tuple[Path, Path]) -> Ed25519PublicKey:
    return load_public(keypair[1])


@pytest.fixture
def settings_for(keypair: tuple[Path, Path]) -> Callable[..., JournalSettings]:
    def make(directory: Path, **overrides: object) -> JournalSettings:
        values: dict[str, object] = {"dir": directory, "signing_key": keypair[0],
                                     "immutable": False}
        values.update(overrides)
        return JournalSettings(**values)  # type: ignore[arg-type]
    return make


async def write_sample(settings: JournalSettings) -> None:
    """Two users' sessions over several small segments, with checkpoints between."""
    journal = await Journal.open(settings)
    try:
        for n, (user, session, ip) in enumerate([("alice", "s-alice", "10.0.0.5"),
                                                 ("bob", "s-bob", "10.0.0.6")]):
            await journal.append("auth", {"user": user, "client": f"{ip}:5000{n}",
                                          "result": "success", "method": "scram-sha-256"})
            await journal.append("session_start", {"session": session, "user": user,
                                                   "client": f"{ip}:5000{n}",
                                                   "database": "clinic"})
        for i in range(24):
            session = "s-alice" if i % 2 == 0 else "s-bob"
            table = "public.patients" if i % 3 else "public.visits"
            await journal.append("statement", {
                "session": session, "n": i, "protocol": "simple",
                "sql": f"SELECT * FROM {table} WHERE id = {i}",
                "decision": "deny" if i % 5 == 4 else "allow", "tables": [table]})
            journal.append_later("outcome", {"session": session, "n": i, "rows": i,
                                             "duration_ms": 0.5})
            if i % 6 == 5:
                await journal.checkpoint()
        await journal.append("session_end", {"session": "s-alice", "how": "client_terminate"})
    finally:
        await journal.close()


@pytest.fixture(scope="session")
def sample_template(tmp_path_factory: pytest.TempPathFactory, keypair: tuple[Path, Path]
                    ) -> Path:
    """A closed journal of several segments; copy it (``sample`` fixture) before changing it."""
    import asyncio

    directory = tmp_path_factory.mktemp("template") / "journal"
    settings = JournalSettings(dir=directory, signing_key=keypair[0], immutable=False,
                               segment_max_bytes=4096)
    asyncio.run(write_sample(settings))
    return directory


@pytest.fixture
def sample(sample_template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "journal"
    shutil.copytree(sample_template, target)
    for path in target.iterdir():
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return target


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("segment-*.jsonl"))


def read_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def rehash(directory: Path, edit: Callable[[list[dict[str, object]]], list[dict[str, object]]]
           ) -> None:
    """What an attacker without the key can do: rewrite entries and redo every link.

    Re-numbers seqs and recomputes every ``prev`` (and checkpoint ``head``); it
    cannot re-sign, so signatures stay as they were.
    """
    files = segment_files(directory)
    entries = [json.loads(line) for f in files for line in read_lines(f)]
    counts = [len(read_lines(f)) for f in files]
    entries = edit(entries)
    journal_id = entries[0]["journal"]
    prev = genesis(str(journal_id))
    lines = []
    for seq, entry in enumerate(entries, 1):
        entry["seq"], entry["prev"] = seq, prev
        if entry["type"] == "checkpoint":
            entry["covers"], entry["head"] = seq - 1, prev
        line = encode_line(entry)
        prev = link(line[:-1])
        lines.append(line)
    for f in files:
        f.unlink()
    seq = 1
    for count in counts:
        chunk, lines = lines[:count], lines[count:]
        if chunk:
            (directory / f"segment-{seq:020d}.jsonl").write_bytes(b"".join(chunk))
            seq += len(chunk)
    if lines:
        (directory / f"segment-{seq:020d}.jsonl").write_bytes(b"".join(lines))


def run_cli(*args: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([str(PHIGATE), *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=REPO, check=check,
                          timeout=60)

