"""`phigate journal show/export/prune` and `phigate keygen`, via the entry point and a process."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.cli import main
from gateway.journal import Journal, JournalSettings
from gateway.journal.cli import register
from gateway.journal.prune import PruneRefused, prune
from gateway.journal.reader import iter_entries
from gateway.journal.verify import verify_journal

from .conftest import run_cli, segment_files

Settings = Callable[..., JournalSettings]


def call(*argv: str | Path) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main([str(a) for a in argv])
    return code, out.getvalue()


def shown(*argv: str | Path) -> list[dict[str, object]]:
    code, out = call("journal", "show", *argv, "--json")
    assert code == 0
    return [json.loads(line) for line in out.splitlines()]


def test_show_user_lists_her_statements_with_client(sample: Path) -> None:
    statements = shown(sample, "--user", "alice", "--type", "statement")
    assert [s["n"] for s in statements] == list(range(0, 24, 2))
    code, table = call("journal", "show", sample, "--user", "alice", "--type", "statement")
    assert code == 0
    rows = table.splitlines()[1:]
    assert len(rows) == 12
    assert all("alice" in row and "10.0.0.5:50000" in row for row in rows)
    everything = shown(sample, "--user", "alice")
    assert {e["type"] for e in everything} == {"auth", "session_start", "statement", "outcome",
                                               "session_end"}


def test_show_filters(sample: Path) -> None:
    denied = shown(sample, "--decision", "deny")
    assert [d["n"] for d in denied] == [4, 9, 14, 19]
    visits = shown(sample, "--table", "visits")
    assert visits and all(v["tables"] == ["public.visits"] for v in visits)
    assert shown(sample, "--table", "public.visits") == visits
    assert shown(sample, "--session", "s-bob", "--type", "outcome")
    times = [e["time"] for e in shown(sample)]
    middle = str(times[len(times) // 2])
    later = shown(sample, "--since", middle)
    assert later and all(str(e["time"]) >= middle for e in later)
    earlier = shown(sample, "--until", middle)
    assert len(earlier) + len(later) == len(times)
    assert shown(sample, "--since", "2999-01-01") == []


def test_show_json_is_the_stored_bytes(sample: Path) -> None:
    code, out = call("journal", "show", sample, "--json")
    assert code == 0
    stored = b"".join(f.read_bytes() for f in segment_files(sample))
    assert out.encode() == stored


def test_show_rejects_a_bad_time(sample: Path) -> None:
    assert call("journal", "show", sample, "--since", "yesterday")[0] == 2


def test_export_jsonl_and_csv(sample: Path, tmp_path: Path) -> None:
    code, out = call("journal", "export", sample, "--format", "jsonl")
    assert code == 0
    assert out.encode() == b"".join(f.read_bytes() for f in segment_files(sample))
    target = tmp_path / "out.csv"
    assert call("journal", "export", sample, "--format", "csv", "--output", target)[0] == 0
    with open(target, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(out.splitlines())
    statement = next(r for r in rows if r["type"] == "statement")
    assert statement["user"] == "alice" and statement["client"] == "10.0.0.5:50000"
    assert statement["sql"].startswith("SELECT")
    assert "prev" in json.loads(statement["fields"])


def test_keygen_writes_a_private_key_only_we_can_read(tmp_path: Path) -> None:
    result = run_cli("keygen", tmp_path / "keys" / "journal")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "keys" / "journal.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys" / "journal.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY")
    again = run_cli("keygen", tmp_path / "keys" / "journal")
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr


def test_register_lets_the_caller_extend(tmp_path: Path) -> None:
    seen = []

    def extend(name: str, parser: argparse.ArgumentParser) -> None:
        seen.append(name)
        if name == "journal verify":
            parser.add_argument("--recordings", type=Path)

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"), extend=extend)
    args = parser.parse_args(["journal", "verify", "d", "--key", "k", "--recordings", "r"])
    assert args.recordings == Path("r")
    assert seen == ["journal verify", "journal show", "journal export", "journal prune",
                    "keygen"]


_DAY_NS = 86_400 * 1_000_000_000
_YEAR_NS = 365 * _DAY_NS


async def test_prune_removes_only_expired_segments(tmp_path: Path, settings_for: Settings,
                                                   public_key: Ed25519PublicKey) -> None:
    settings = settings_for(tmp_path / "j", segment_max_bytes=4096)
    seven_years_ago = time.time_ns() - 7 * _YEAR_NS
    journal = await Journal.open(settings, clock_ns=lambda: seven_years_ago)
    for i in range(50):
        await journal.append("statement", {"sql": f"SELECT {i}", "pad": "x" * 80})
    await journal.close()
    old = segment_files(settings.dir)
    assert len(old) >= 3

    journal = await Journal.open(settings)
    try:
        with pytest.raises(PruneRefused):
            await prune(journal, 30)
        result = await prune(journal)
    finally:
        await journal.close()
    removed = [item["segment"] for item in result.removed]
    assert removed == [f.name for f in old[:-1]]
    # The segment that was active is sealed on reopen (it is years old), but its last
    # line is the rotation's checkpoint, written now: too young to go.
    assert [f.name for f in segment_files(settings.dir)][0] == old[-1].name
    entries = list(iter_entries(settings.dir))
    record = next(e.fields for e in entries if e.fields["type"] == "prune")
    assert record["retention_days"] == 2190
    report = verify_journal(settings.dir, public_key)
    assert report.ok, report.summary()
    assert report.first_seq == int(old[-1].name[len("segment-"):-len(".jsonl")])


async def test_prune_keeps_young_segments(sample: Path, settings_for: Settings) -> None:
    before = segment_files(sample)
    journal = await Journal.open(settings_for(sample))
    try:
        result = await prune(journal)
    finally:
        await journal.close()
    assert result.removed == [] and result.entry_seq is None
    assert segment_files(sample) == before


def test_prune_command(sample: Path, keypair: tuple[Path, Path]) -> None:
    result = run_cli("journal", "prune", sample, "--key", keypair[0])
    assert result.returncode == 0, result.stderr
    assert "nothing to prune" in result.stdout
    assert run_cli("journal", "verify", sample, "--key", keypair[1]).returncode == 0
    assert run_cli("journal", "prune", sample.parent / "none", "--key",
                   keypair[0]).returncode == 2


def test_deleting_past_a_prune_is_still_caught(tmp_path: Path, settings_for: Settings,
                                               keypair: tuple[Path, Path]) -> None:
    settings = settings_for(tmp_path / "j", segment_max_bytes=4096)

    async def build() -> None:
        old = time.time_ns() - 7 * _YEAR_NS
        journal = await Journal.open(settings, clock_ns=lambda: old)
        for i in range(50):
            await journal.append("statement", {"sql": f"SELECT {i}", "pad": "x" * 80})
        await journal.close()
        journal = await Journal.open(settings, clock_ns=lambda: old + 10 * _DAY_NS)
        for i in range(50):
            await journal.append("statement", {"sql": f"SELECT {i}", "pad": "x" * 80})
        await journal.close()
        journal = await Journal.open(settings)
        try:
            result = await prune(journal, 2190, now_ns=old + (2190 + 5) * _DAY_NS)
            assert result.removed
        finally:
            await journal.close()

    asyncio.run(build())
    assert run_cli("journal", "verify", settings.dir, "--key", keypair[1]).returncode == 0
    segment_files(settings.dir)[0].unlink()
    result = run_cli("journal", "verify", settings.dir, "--key", keypair[1])
    assert result.returncode == 1 and "no prune entry records" in result.stdout
