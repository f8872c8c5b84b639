"""A recording against its journal: verified, incomplete, missing, truncated, edited, extended."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.journal import Journal, JournalSettings
from gateway.journal.keys import generate
from gateway.recording.binding import Status, check_all, check_recording, scan_journal

DATA = b"PHIREC" + bytes(range(256)) * 8


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    private, _ = generate(tmp_path / "keys" / "journal")
    opened = await Journal.open(JournalSettings(dir=tmp_path / "journal", signing_key=private,
                                                durability="write"))
    yield opened
    await opened.close()


async def record(journal: Journal, recordings: Path, session: str, *, ended: bool = True,
                 checkpoint_at: int | None = None) -> Path:
    file = f"2026-11-30/{session}.phirec"
    path = recordings / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(DATA)
    await journal.append("session_start", {"session": session, "identity": "alice"})
    await journal.append("recording_started", {"session": session, "file": file})
    if checkpoint_at is not None:
        await journal.append("recording_checkpoint", {
            "session": session, "file": file, "bytes": checkpoint_at,
            "sha256": hashlib.sha256(DATA[:checkpoint_at]).hexdigest()})
    if ended:
        await journal.append("session_end", {"session": session, "recording": {
            "file": file, "bytes": len(DATA), "sha256": hashlib.sha256(DATA).hexdigest(),
            "chunks": 3}})
    await journal.checkpoint()
    return path


async def test_statuses(journal: Journal, tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    fine = await record(journal, recordings, "fine")
    live = await record(journal, recordings, "live", ended=False, checkpoint_at=1000)
    cut = await record(journal, recordings, "cut", ended=False, checkpoint_at=1000)
    cut.write_bytes(DATA[:900])
    short = await record(journal, recordings, "short")
    short.write_bytes(DATA[:-1])
    edited = await record(journal, recordings, "edited")
    edited.write_bytes(DATA[:-1] + b"!")
    longer = await record(journal, recordings, "longer")
    longer.write_bytes(DATA + b"more")
    gone = await record(journal, recordings, "gone")
    gone.unlink()
    (recordings / "stray.phirec").write_bytes(b"x")
    sessions = scan_journal(journal.settings.dir)
    status = {sid: check_recording(recordings, facts).status for sid, facts in sessions.items()}
    assert status == {"fine": Status.VERIFIED, "live": Status.INCOMPLETE, "cut": Status.MISMATCH,
                      "short": Status.MISMATCH, "edited": Status.MISMATCH,
                      "longer": Status.MISMATCH, "gone": Status.MISSING}
    assert "truncated" in check_recording(recordings, sessions["short"]).message
    assert "added" in check_recording(recordings, sessions["longer"]).message
    checks, unknown = check_all(journal.settings.dir, recordings)
    assert len(checks) == 7 and unknown == ["stray.phirec"]
    assert fine.exists() and live.exists()
