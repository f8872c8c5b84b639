"""Preallocated segments: a zero-filled tail is the end of data, for recovery, verify and show.

The writer keeps zeros ahead of the data so that fdatasync need not change the file's size;
a gateway killed mid-run leaves them behind. Every reader must stop at them, a torn write
before them is still quarantined, and closing or sealing trims them.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.journal import Journal, JournalSettings, segments
from gateway.journal.reader import iter_entries
from gateway.journal.verify import verify_journal

from .conftest import segment_files

PHIGATE = Path(sys.executable).with_name("phigate")  # the installed console script


def phigate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PHIGATE), *args], capture_output=True, text=True, timeout=60)

Settings = Callable[..., JournalSettings]


async def _crashed_copy(settings: JournalSettings, target: Path, statements: int = 5) -> Path:
    """The directory as a kill -9 would leave it: copied while the journal is open."""
    journal = await Journal.open(settings)
    try:
        for i in range(statements):
            await journal.append("statement", {"sql": f"SELECT {i}"})
        shutil.copytree(settings.dir, target, ignore=shutil.ignore_patterns(".lock"))
    finally:
        await journal.close()
    return target


async def test_live_segment_is_preallocated_and_closing_trims_it(
        tmp_path: Path, settings_for: Settings) -> None:
    settings = settings_for(tmp_path / "j")
    journal = await Journal.open(settings)
    try:
        await journal.append("statement", {"sql": "SELECT 1"})
        newest = segment_files(settings.dir)[-1]
        data = newest.read_bytes()
        assert len(data) == segments.PREALLOCATE_STEP
        written, rest = segments.written_part(data)
        assert written.endswith(b"\n") and rest == b""
        assert data[len(written):] == bytes(len(data) - len(written))
    finally:
        await journal.close()
    assert newest.read_bytes().endswith(b"\n")


async def test_zero_tail_left_by_a_crash_is_the_end_of_data(
        tmp_path: Path, settings_for: Settings, public_key: Ed25519PublicKey,
        keypair: tuple[Path, Path]) -> None:
    crashed = await _crashed_copy(settings_for(tmp_path / "j"), tmp_path / "crashed")
    newest = segment_files(crashed)[-1]
    assert newest.read_bytes().endswith(b"\0")
    report = verify_journal(crashed, public_key)
    assert report.ok, report.summary()
    # The auditor's commands agree: verify passes, show stops at the zeros.
    cli = phigate("journal", "verify", str(crashed), "--key", str(keypair[1]))
    assert cli.returncode == 0 and cli.stdout.startswith("OK"), cli.stdout + cli.stderr
    shown = phigate("journal", "show", str(crashed), "--json")
    assert shown.returncode == 0 and "\\u0000" not in shown.stdout and "\0" not in shown.stdout
    sqls = [e.fields.get("sql") for e in iter_entries(crashed)]
    assert [s for s in sqls if s] == [f"SELECT {i}" for i in range(5)]

    settings = settings_for(crashed)
    journal = await Journal.open(settings)
    try:
        seq = await journal.append("statement", {"sql": "SELECT after"})
    finally:
        await journal.close()
    assert not list(crashed.glob("*.torn-*")), "a clean zero tail is not a torn line"
    stored = {e.seq: e.fields.get("sql") for e in iter_entries(crashed)}
    assert stored[seq] == "SELECT after"
    assert sorted(stored) == list(range(1, len(stored) + 1))
    assert verify_journal(crashed, public_key).ok


@pytest.mark.parametrize("torn", [
    b'{"session":"s1","sql":"SELECT * FROM pati',  # cut mid-line, zeros after it
    b'{"session":"s1","sql":"SEL' + bytes(100) + b'ients"}\n{"seq":',  # pages out of order
])
async def test_torn_write_before_the_zero_tail_is_quarantined(
        tmp_path: Path, settings_for: Settings, public_key: Ed25519PublicKey, torn: bytes
        ) -> None:
    crashed = await _crashed_copy(settings_for(tmp_path / "j"), tmp_path / "crashed")
    newest = segment_files(crashed)[-1]
    data = newest.read_bytes()
    end = len(segments.written_part(data)[0])
    newest.write_bytes(data[:end] + torn + data[end + len(torn):])

    report = verify_journal(crashed, public_key)
    assert not report.ok and "incomplete" in report.summary()
    journal = await Journal.open(settings_for(crashed))
    await journal.close()
    quarantined = newest.with_name(newest.name + ".torn-1")
    assert quarantined.read_bytes() == torn.rstrip(b"\0")
    recovery = [e.fields for e in iter_entries(crashed) if e.fields["type"] == "recovery"]
    assert len(recovery) == 1 and recovery[0]["bytes"] == len(torn.rstrip(b"\0"))
    assert verify_journal(crashed, public_key).ok


async def test_sealing_trims_the_preallocation(
        tmp_path: Path, settings_for: Settings, public_key: Ed25519PublicKey) -> None:
    settings = settings_for(tmp_path / "j", segment_max_bytes=8192)
    journal = await Journal.open(settings)
    try:
        for i in range(60):
            await journal.append("statement", {"sql": f"SELECT {i}", "pad": "x" * 200})
        sealed = [f for f in segment_files(settings.dir) if segments.is_sealed(f)]
        assert len(sealed) >= 2
        for path in sealed:
            assert path.read_bytes().endswith(b"\n") and b"\0" not in path.read_bytes()
    finally:
        await journal.close()
    assert verify_journal(settings.dir, public_key).ok


async def test_fdatasync_never_runs_on_the_event_loop(
        tmp_path: Path, settings_for: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer thread syncs (fdatasync, or a write that syncs itself); the loop only
    learns of each batch once it is durable."""
    import os

    callers: list[tuple[str, str]] = []
    real_fdatasync, real_pwrite_all = os.fdatasync, segments.pwrite_all

    def recording_fdatasync(fd: int) -> None:
        callers.append(("fdatasync", threading.current_thread().name))
        real_fdatasync(fd)

    def recording_pwrite_all(fd: int, data: bytes, offset: int, *, sync: bool = False) -> None:
        if sync:
            callers.append(("synced write", threading.current_thread().name))
        real_pwrite_all(fd, data, offset, sync=sync)

    journal = await Journal.open(settings_for(tmp_path / "j"))
    monkeypatch.setattr(os, "fdatasync", recording_fdatasync)
    monkeypatch.setattr(segments, "pwrite_all", recording_pwrite_all)
    try:
        before = journal.stats
        seqs = await asyncio.gather(*(journal.append("statement", {"sql": f"SELECT {i}"})
                                      for i in range(64)))
        for i in range(8):  # one at a time: each its own batch, each synced
            seqs.append(await journal.append("statement", {"sql": f"SELECT {i}"}))
        after = journal.stats
    finally:
        await journal.close()
    assert sorted(seqs) == list(range(min(seqs), min(seqs) + 72))
    assert len(callers) >= 8
    assert {thread for _, thread in callers} == {"phigate-journal-writer"}, callers
    # Group commit: 64 sessions waiting at once share far fewer batches (and syncs).
    assert after.batches - before.batches < 64 + 8


async def test_write_mode_keeps_room_for_the_loops_own_writes(
        tmp_path: Path, settings_for: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``durability: write`` a batch is written on the loop while enough zeros lie
    ahead; when they run short one batch goes to the thread, which makes room again, and
    the loop writes the rest (not every batch until the preallocation ran out)."""
    writers: list[str] = []
    real_pwrite_all = segments.pwrite_all

    def recording_pwrite_all(fd: int, data: bytes, offset: int, *, sync: bool = False) -> None:
        if data.count(0) != len(data):  # not the zeros of a preallocation
            writers.append(threading.current_thread().name)
        real_pwrite_all(fd, data, offset, sync=sync)

    journal = await Journal.open(settings_for(tmp_path / "j", durability="write"))
    monkeypatch.setattr(segments, "pwrite_all", recording_pwrite_all)
    try:
        # ~1.5 steps of preallocation, one batch at a time: the room runs short once.
        for i in range(3 * segments.PREALLOCATE_STEP // 2 // 4096):
            await journal.append("statement", {"sql": f"SELECT {i}", "pad": "x" * 4000})
    finally:
        monkeypatch.undo()
        await journal.close()
    on_thread = writers.count("phigate-journal-writer")
    assert writers.count("MainThread") > 300 and on_thread <= 3, (on_thread, len(writers))
