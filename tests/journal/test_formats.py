"""Journal formats: format 2 statement entries stand alone; format 1 journals still verify.

The format-1 fixture is generated (tests/journal/v1_fixture.py) and pinned by its digest,
so it stays exactly what older gateways wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.journal import Journal, JournalSettings
from gateway.journal.chain import FORMAT_VERSION
from gateway.journal.keys import load_public
from gateway.journal.reader import iter_entries
from gateway.journal.verify import verify_journal

from . import v1_fixture
from .conftest import rehash, segment_files

Settings = Callable[..., JournalSettings]
V1_DIGEST = "23fa0faa62a5f68a8377acf3cb46bc1b4545eda46667570298ab73f6132ffc55"
PHIGATE = Path(sys.executable).with_name("phigate")  # the installed console script


def phigate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PHIGATE), *map(str, args)], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def v1(tmp_path: Path) -> tuple[Path, Path]:
    directory = tmp_path / "v1" / "journal"
    public = v1_fixture.build(directory)
    return directory, public


def test_the_v1_fixture_is_what_it_always_was(v1: tuple[Path, Path]) -> None:
    assert v1_fixture.digest(v1[0]) == V1_DIGEST


def test_a_v1_journal_verifies_and_reads(v1: tuple[Path, Path]) -> None:
    directory, public = v1
    result = phigate("journal", "verify", directory, "--key", public)
    assert result.returncode == 0 and result.stdout.startswith("OK"), result.stdout
    shown = phigate("journal", "show", directory, "--json", "--type", "statement")
    assert shown.returncode == 0
    statements = [json.loads(line) for line in shown.stdout.splitlines()]
    assert len(statements) == 2 and all("identity" not in s for s in statements)
    # Older entries name only their session; the reader resolves who and from where.
    table = phigate("journal", "show", directory, "--user", "alice", "--type", "statement")
    assert table.returncode == 0 and table.stdout.count("10.1.2.3:50123") == 2


async def test_the_gateway_continues_a_v1_journal_in_format_2(v1: tuple[Path, Path]) -> None:
    directory, public = v1
    key = directory.parent / "v1.key"
    key.write_bytes(v1_fixture.private_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key.chmod(0o600)
    journal = await Journal.open(JournalSettings(dir=directory, signing_key=key,
                                                 immutable=False))
    await journal.close()
    starts = [e.fields for e in iter_entries(directory) if e.fields["type"] == "start"]
    assert "format" not in starts[0] and starts[1]["format"] == FORMAT_VERSION
    assert verify_journal(directory, load_public(public)).ok


def test_a_format_newer_than_this_verifier_is_reported(
        sample: Path, public_key: Ed25519PublicKey) -> None:
    def future(entries: list[dict[str, object]]) -> list[dict[str, object]]:
        for entry in entries:
            if entry["type"] == "start":
                entry["format"] = FORMAT_VERSION + 1
        return entries

    rehash(sample, future)
    report = verify_journal(sample, public_key)
    assert not report.ok and f"format {FORMAT_VERSION + 1}" in report.summary()


def test_new_journals_record_their_format(sample: Path) -> None:
    assert segment_files(sample)
    start = next(e.fields for e in iter_entries(sample) if e.fields["type"] == "start")
    assert start["format"] == FORMAT_VERSION
