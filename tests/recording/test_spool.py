"""Auditor access is journaled: directly, through the running gateway's spool, or not shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.journal import Journal, JournalSettings
from gateway.journal.keys import generate
from gateway.journal.reader import iter_entries
from gateway.journal.segments import DirectoryLock
from gateway.recording import spool
from gateway.recording.spool import (
    AccessNotRecorded,
    SpoolDrainer,
    access_fields,
    record_access,
    spool_dir,
    write_request,
)


@pytest.fixture
def settings(tmp_path: Path) -> JournalSettings:
    private, _ = generate(tmp_path / "keys" / "journal")
    return JournalSettings(dir=tmp_path / "journal", signing_key=private, durability="write")


def accesses(settings: JournalSettings) -> list[dict[str, object]]:
    return [e.fields for e in iter_entries(settings.dir) if e.fields["type"] == "audit_access"]


async def opened(settings: JournalSettings) -> Journal:
    return await Journal.open(settings)


def test_without_a_gateway_the_cli_appends_itself(settings: JournalSettings) -> None:
    import asyncio

    asyncio.run(_open_and_close(settings))  # the journal exists, nobody holds it
    how = record_access(settings, access_fields("replay", session="abc", acting_as="carol"))
    assert how.startswith("journaled as entry")
    (entry,) = accesses(settings)
    assert entry["session"] == "abc" and entry["as"] == "carol" and entry["via"] == "direct"
    assert entry["os_user"]


async def _open_and_close(settings: JournalSettings) -> None:
    await (await opened(settings)).close()


async def test_the_gateway_drains_the_spool(settings: JournalSettings) -> None:
    journal = await opened(settings)
    directory = spool_dir(settings.dir)
    write_request(directory, access_fields("sessions list", filters={"user": "alice"}))
    (directory / "bad.json").write_text('{"action": "replay", "evil": 1}')
    drainer = SpoolDrainer(journal, directory)
    await drainer.start()  # drains at start-up
    await drainer.stop()
    await journal.close()
    good, bad = accesses(settings)
    assert good["action"] == "sessions list" and good["filters"] == {"user": "alice"}
    assert good["via"] == "spool" and "unexpected fields" in str(bad["rejected"])
    assert sorted(p.name for p in directory.iterdir()) == ["bad.rejected"]


def test_an_unanswered_request_is_refused(settings: JournalSettings,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    settings.dir.mkdir(parents=True)
    lock = DirectoryLock(settings.dir)  # a "gateway" that never drains its spool
    assert lock.acquire()
    monkeypatch.setattr(spool, "ACK_TIMEOUT_S", 0.2)
    try:
        with pytest.raises(AccessNotRecorded, match="did not journal"):
            record_access(settings, access_fields("replay", session="abc"))
    finally:
        lock.release()
    assert not list(spool_dir(settings.dir).glob("*.json"))  # withdrawn


def test_no_journal_no_access(tmp_path: Path) -> None:
    settings = JournalSettings(dir=tmp_path / "nowhere", signing_key=tmp_path / "k")
    with pytest.raises(AccessNotRecorded, match="no journal"):
        record_access(settings, access_fields("replay"))
