"""A full journal disk: appends are refused with 53100, nothing half-written, service resumes.

Uses a real 1 MiB tmpfs (we run as root in CI). Where mounting is not
allowed, RLIMIT_FSIZE makes writes past a size fail the same way (EFBIG);
only outside CI is the test skipped instead.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.errors import JournalFull
from gateway.journal import Journal, JournalSettings
from gateway.journal import writer as writer_module
from gateway.journal.reader import iter_entries
from gateway.journal.verify import verify_journal

Settings = Callable[..., JournalSettings]


class SmallDisk:
    """A place that fills up, and a way to free space again."""

    def __init__(self, root: Path, free: Callable[[], None]) -> None:
        self.root = root
        self.free = free


@contextmanager
def tmpfs_disk(mountpoint: Path) -> Iterator[SmallDisk]:
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mountpoint)],
                   check=True, capture_output=True)
    try:
        filler = mountpoint / "filler"
        # Leave ~96 KiB for the journal, so it fills within a few hundred entries.
        filler.write_bytes(b"\0" * (1024 * 1024 - 96 * 1024))
        yield SmallDisk(mountpoint, lambda: filler.unlink(missing_ok=True))
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)


@contextmanager
def fsize_limited_disk(directory: Path) -> Iterator[SmallDisk]:
    directory.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
    resource.setrlimit(resource.RLIMIT_FSIZE, (96 * 1024, hard))
    try:
        yield SmallDisk(directory,
                        lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard)))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    try:
        probe = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                                str(tmp_path)], capture_output=True)
        mounted = probe.returncode == 0
    except FileNotFoundError:
        mounted = False
    if mounted:
        subprocess.run(["umount", str(tmp_path)], check=True, capture_output=True)
        with tmpfs_disk(tmp_path / "tmpfs") as disk:
            yield disk
        return
    if not os.environ.get("CI"):
        pytest.skip("cannot mount a tmpfs here (not root?); CI uses RLIMIT_FSIZE instead")
    with fsize_limited_disk(tmp_path / "limited") as disk:
        yield disk


async def test_full_disk_refuses_then_recovers(small_disk: SmallDisk, settings_for: Settings,
                                               public_key: Ed25519PublicKey) -> None:
    settings = settings_for(small_disk.root / "journal")
    journal = await Journal.open(settings)
    acknowledged: dict[int, str] = {}
    refused: list[str] = []
    try:
        for _ in range(5000):
            token = uuid.uuid4().hex
            try:
                seq = await journal.append("statement", {"token": token, "pad": "x" * 900})
            except JournalFull as e:
                assert e.sqlstate == "53100"
                assert "/" not in e.message, "clients never see internal paths"
                refused.append(token)
                break
            acknowledged[seq] = token
        else:
            pytest.fail("the small disk never filled")
        assert not journal.writable
        # Concurrent sessions are refused too, and keep being refused while it is full.
        results = await asyncio.gather(
            *(journal.append("statement", {"token": f"again-{i}", "pad": "x" * 900})
              for i in range(8)), return_exceptions=True)
        assert all(isinstance(r, JournalFull) for r in results), results
        await asyncio.sleep(writer_module.RETRY_AFTER_S * 1.5)
        with pytest.raises(JournalFull):
            await journal.append("statement", {"token": "still-full", "pad": "x" * 900})

        small_disk.free()
        await asyncio.sleep(writer_module.RETRY_AFTER_S * 1.5)
        seq = await journal.append("statement", {"token": "after", "pad": "x"})
        acknowledged[seq] = "after"
        assert journal.writable
    finally:
        await journal.close()
    stored = {e.seq: e.fields.get("token") for e in iter_entries(settings.dir)}
    assert all(stored.get(seq) == token for seq, token in acknowledged.items())
    tokens = set(stored.values())
    assert not tokens & {*refused, "still-full", *(f"again-{i}" for i in range(8))}
    assert sorted(stored) == list(range(1, len(stored) + 1))
    report = verify_journal(settings.dir, public_key)
    assert report.ok, report.summary()


async def test_io_error_mid_write_is_undone(tmp_path: Path, settings_for: Settings,
                                            public_key: Ed25519PublicKey, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A write that fails half-way (EIO) leaves no trace: 58030, then business as usual."""
    from gateway.errors import JournalWriteFailed
    from gateway.journal import segments

    real_pwrite_all = segments.pwrite_all
    failures = {"left": 1}

    def flaky_pwrite_all(fd: int, data: bytes, offset: int, *, sync: bool = False) -> None:
        if failures["left"] and b"lost-" in data:
            failures["left"] -= 1
            real_pwrite_all(fd, data[: len(data) // 2], offset, sync=sync)
            raise OSError(5, "Input/output error")
        real_pwrite_all(fd, data, offset, sync=sync)

    settings = settings_for(tmp_path / "j")
    journal = await Journal.open(settings)
    try:
        await journal.append("statement", {"token": "before"})
        monkeypatch.setattr(segments, "pwrite_all", flaky_pwrite_all)
        results = await asyncio.gather(
            *(journal.append("statement", {"token": f"lost-{i}"}) for i in range(4)),
            return_exceptions=True)
        assert all(isinstance(r, JournalWriteFailed) and r.sqlstate == "58030"
                   for r in results), results
        assert not journal.writable
        await asyncio.sleep(writer_module.RETRY_AFTER_S * 1.5)
        await journal.append("statement", {"token": "after"})
        assert journal.writable
    finally:
        await journal.close()
    tokens = [e.fields.get("token") for e in iter_entries(settings.dir)]
    assert "before" in tokens and "after" in tokens
    assert not any(str(t).startswith("lost-") for t in tokens)
    report = verify_journal(settings.dir, public_key)
    assert report.ok, report.summary()


async def test_a_writer_bug_fails_closed(tmp_path: Path, settings_for: Settings,
                                         monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gateway.errors import JournalWriteFailed

    journal = await Journal.open(settings_for(tmp_path / "j"))
    try:
        def broken(*args: object) -> object:
            raise RuntimeError("bug")

        monkeypatch.setattr(journal._writer, "_encode", broken)
        with pytest.raises(JournalWriteFailed):
            await journal.append("statement", {"sql": "SELECT 1"})
        monkeypatch.undo()
        with pytest.raises(JournalWriteFailed, match="restart"):
            await journal.append("statement", {"sql": "SELECT 2"})
        assert not journal.writable
    finally:
        await journal.close()


async def test_batches_encoded_after_a_failed_write_are_refused(
        tmp_path: Path, settings_for: Settings, public_key: Ed25519PublicKey,
        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Lines are encoded on the loop before the disk thread writes them: while a failing
    write hangs, later ticks are encoded after it. None of them may reach the disk (they
    chain past lines that are not there); their sessions are refused, and the journal
    continues from what is on disk once it can be written again."""
    import threading
    import time as time_module

    from gateway.errors import JournalWriteFailed
    from gateway.journal import segments

    real_pwrite_all = segments.pwrite_all
    hanging = threading.Event()

    def failing_slowly(fd: int, data: bytes, offset: int, *, sync: bool = False) -> None:
        if b"first-" in data and not hanging.is_set():
            hanging.set()
            time_module.sleep(0.2)  # the loop encodes the next ticks meanwhile
            raise OSError(5, "Input/output error")
        real_pwrite_all(fd, data, offset, sync=sync)

    settings = settings_for(tmp_path / "j")
    journal = await Journal.open(settings)
    try:
        before = await journal.append("statement", {"token": "before"})
        monkeypatch.setattr(segments, "pwrite_all", failing_slowly)
        first = asyncio.ensure_future(journal.append("statement", {"token": "first-0"}))
        while not hanging.is_set():
            await asyncio.sleep(0.005)
        later = []
        for i in range(5):  # one tick each, all encoded after the failing batch
            later.append(asyncio.ensure_future(
                journal.append("statement", {"token": f"later-{i}"})))
            journal.append_later("outcome", {"token": f"later-outcome-{i}"})
            await asyncio.sleep(0.01)
        results = await asyncio.gather(first, *later, return_exceptions=True)
        assert all(isinstance(r, JournalWriteFailed) for r in results), results
        await asyncio.sleep(writer_module.RETRY_AFTER_S * 1.5)
        after = await journal.append("statement", {"token": "after"})
        assert after == before + 1, "the chain continues from the last line on disk"
    finally:
        await journal.close()
    tokens = [str(e.fields.get("token")) for e in iter_entries(settings.dir)]
    assert "before" in tokens and "after" in tokens
    assert not any(t.startswith(("first-", "later-")) for t in tokens), tokens
    report = verify_journal(settings.dir, public_key)
    assert report.ok, report.summary()


def test_a_refused_synced_write_falls_back_to_fdatasync(tmp_path: Path, monkeypatch  # type: ignore[no-untyped-def]
                                                        ) -> None:
    """Where the kernel refuses RWF_DSYNC, a synced write is a write plus fdatasync."""
    from gateway.journal import segments

    synced: list[int] = []
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(segments, "_dsync_flag", 0x4000_0000)  # a flag no kernel knows

    def recording_fdatasync(fd: int) -> None:
        synced.append(fd)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", recording_fdatasync)
    path = tmp_path / "segment"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        segments.pwrite_all(fd, b"line\n", 0, sync=True)
        segments.pwrite_all(fd, b"next\n", 5, sync=True)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"line\nnext\n"
    assert synced == [fd, fd] and segments._dsync_flag == 0
