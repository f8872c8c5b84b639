"""Opening a journal: continue a clean one, quarantine a torn tail, refuse a tampered one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.journal import Journal, JournalCorrupt, JournalError, JournalLocked, JournalSettings
from gateway.journal.reader import iter_entries
from gateway.journal.verify import verify_journal

from .conftest import read_lines, segment_files, write_lines

Settings = Callable[..., JournalSettings]


async def test_reopen_continues_the_chain(tmp_path: Path, settings_for: Settings,
                                          public_key: Ed25519PublicKey) -> None:
    settings = settings_for(tmp_path / "j")
    journal = await Journal.open(settings)
    first = await journal.append("statement", {"sql": "SELECT 1"})
    ident = journal.journal_id
    await journal.close()
    journal = await Journal.open(settings)
    assert journal.journal_id == ident
    second = await journal.append("statement", {"sql": "SELECT 2"})
    await journal.close()
    assert second > first
    types = [e.fields["type"] for e in iter_entries(settings.dir)]
    assert types[:2] == ["start", "checkpoint"]
    assert types.count("start") == 2 and types.count("stop") == 2
    assert types[-2:] == ["stop", "checkpoint"]
    assert verify_journal(settings.dir, public_key).ok


async def test_torn_last_line_is_quarantined_and_recorded(
        tmp_path: Path, settings_for: Settings, public_key: Ed25519PublicKey) -> None:
    settings = settings_for(tmp_path / "j")
    journal = await Journal.open(settings)
    await journal.append("statement", {"sql": "SELECT 1"})
    await journal.close()
    newest = segment_files(settings.dir)[-1]
    size = newest.stat().st_size
    torn = b'{"session":"s1","sql":"SELECT * FROM pati'
    with open(newest, "ab") as f:
        f.write(torn)

    journal = await Journal.open(settings)
    await journal.close()
    quarantined = newest.with_name(newest.name + ".torn-1")
    assert quarantined.read_bytes() == torn
    assert newest.read_bytes()[size - 1:size] == b"\n"
    recovery = [e.fields for e in iter_entries(settings.dir) if e.fields["type"] == "recovery"]
    assert len(recovery) == 1
    assert recovery[0]["bytes"] == len(torn)
    assert recovery[0]["quarantine"] == quarantined.name
    assert recovery[0]["segment"] == newest.name
    assert recovery[0]["offset"] == size
    assert verify_journal(settings.dir, public_key).ok


async def test_torn_line_alone_in_a_new_journal(tmp_path: Path, settings_for: Settings,
                                                public_key: Ed25519PublicKey) -> None:
    # A crash while writing the very first entry.
    settings = settings_for(tmp_path / "j")
    settings.dir.mkdir()
    (settings.dir / "segment-00000000000000000001.jsonl").write_bytes(b'{"by":"gate')
    journal = await Journal.open(settings)
    await journal.close()
    assert (settings.dir / "segment-00000000000000000001.jsonl.torn-1").exists()
    assert verify_journal(settings.dir, public_key).ok


async def test_empty_first_segment_is_reused(tmp_path: Path, settings_for: Settings,
                                             public_key: Ed25519PublicKey) -> None:
    settings = settings_for(tmp_path / "j")
    settings.dir.mkdir()
    (settings.dir / "segment-00000000000000000001.jsonl").touch()
    journal = await Journal.open(settings)
    await journal.close()
    assert len(segment_files(settings.dir)) == 1
    assert verify_journal(settings.dir, public_key).ok


def _damage_middle(path: Path) -> None:
    lines = read_lines(path)
    k = len(lines) // 2
    lines[k] = lines[k].replace(b"SELECT", b"DELETE", 1)
    write_lines(path, lines)


@pytest.mark.parametrize("damage", ["middle-line", "missing-segment", "bad-checkpoint-file",
                                    "truncated", "swapped"])
async def test_open_refuses_a_damaged_journal(sample: Path, settings_for: Settings,
                                              damage: str) -> None:
    files = segment_files(sample)
    if damage == "middle-line":
        _damage_middle(files[-1])
    elif damage == "missing-segment":
        files[1].unlink()
    elif damage == "bad-checkpoint-file":
        cp = sample / "checkpoint.json"
        cp.write_bytes(cp.read_bytes().replace(b'"covers":', b'"covers":1'))
    elif damage == "truncated":
        write_lines(files[-1], read_lines(files[-1])[:-2])
    elif damage == "swapped":
        a, b = files[1].read_bytes(), files[2].read_bytes()
        files[1].write_bytes(b)
        files[2].write_bytes(a)
    with pytest.raises(JournalCorrupt, match="phigate journal verify"):
        await Journal.open(settings_for(sample, segment_max_bytes=4096))
    # Refusing must not have written anything.
    assert not any(p.name.endswith(".torn-1") for p in sample.iterdir())


async def test_damage_in_the_newest_segment_is_located(sample: Path,
                                                       settings_for: Settings) -> None:
    newest = segment_files(sample)[-1]
    lines = read_lines(newest)
    lines[1] = lines[1].replace(b'"time":"2', b'"time":"3', 1)
    write_lines(newest, lines)
    with pytest.raises(JournalCorrupt) as caught:
        await Journal.open(settings_for(sample))
    assert caught.value.file == newest.name
    assert caught.value.line == 2
    assert caught.value.seq == json.loads(lines[1])["seq"]


async def test_checkpoints_without_segments_is_refused(sample: Path,
                                                       settings_for: Settings) -> None:
    for f in segment_files(sample):
        f.unlink()
    with pytest.raises(JournalCorrupt, match="no segment files"):
        await Journal.open(settings_for(sample))


async def test_second_open_is_locked_out(tmp_path: Path, settings_for: Settings) -> None:
    settings = settings_for(tmp_path / "j")
    journal = await Journal.open(settings)
    try:
        with pytest.raises(JournalLocked):
            await Journal.open(settings)
    finally:
        await journal.close()


async def test_journal_id_mismatch_is_refused(tmp_path: Path, settings_for: Settings) -> None:
    settings = settings_for(tmp_path / "j")
    journal = await Journal.open(settings, journal_id="first")
    await journal.close()
    with pytest.raises(JournalError, match="holds journal first"):
        await Journal.open(settings, journal_id="second")


async def test_open_after_a_crash_between_seal_and_next_segment(
        tmp_path: Path, settings_for: Settings, public_key: Ed25519PublicKey) -> None:
    settings = settings_for(tmp_path / "j", segment_max_bytes=4096)
    journal = await Journal.open(settings)
    for i in range(40):
        await journal.append("statement", {"sql": f"SELECT {i}", "pad": "x" * 100})
    await journal.close()
    # Simulate: the newest segment was sealed and the process died before the next existed.
    files = segment_files(settings.dir)
    files[-1].chmod(0o444)
    journal = await Journal.open(settings)
    await journal.close()
    assert len(segment_files(settings.dir)) == len(files) + 1
    assert verify_journal(settings.dir, public_key).ok
