"""The recorder hook and writer: files that match their journal binding, and the failure policy."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import hashlib
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.proxy.hooks import EndReason, Outcome, Phase, SessionSummary, Statement
from gateway.recording import writer
from gateway.recording.errors import RecordingFailed, RecordingUnavailable
from gateway.recording.events import ResultReceived, SessionEnded, StatementSent
from gateway.recording.hook import RecorderHook
from gateway.recording.keys import load_key_file
from gateway.recording.reader import RecordingReader
from gateway.settings.config import RecordingSettings

from .conftest import FakeJournal, session_info


def make_hook(settings: RecordingSettings, journal: FakeJournal, **kw: float) -> RecorderHook:
    return RecorderHook(settings, journal, **kw)  # type: ignore[arg-type]


async def run_statement(hook: RecorderHook, number: int, sql: str = "SELECT 1") -> None:
    statement = Statement(session_info(), number, Phase.SIMPLE, sql)
    await hook.before_statement(statement)
    assert statement.capture_rows == 3
    hook.after_statement(statement, Outcome(rows=1, command_tags=["SELECT 1"]))


async def test_a_recorded_session_matches_its_journal_binding(
        settings: RecordingSettings, key_file: Path) -> None:
    journal = FakeJournal()
    hook = make_hook(settings, journal)
    await hook.recorder.start()
    info = session_info()
    await hook.session_started(info)
    for n in range(1, 4):
        await run_statement(hook, n)
    await asyncio.sleep(0.2)  # several flush intervals: chunks on disk before the end
    summary = SessionSummary(statements=3, end=EndReason.CLIENT_TERMINATE)
    hook.session_ended(info, summary)
    await hook.recorder.close()

    started = journal.of("recording_started")[0]
    binding = summary.annotations["recording"]
    assert isinstance(binding, dict) and binding["file"] == started["file"]
    path = settings.dir / str(started["file"])
    data = path.read_bytes()
    assert (binding["bytes"], binding["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert binding["chunks"] >= 2 and oct(path.stat().st_mode)[-3:] == "600"
    with RecordingReader(path, load_key_file(key_file)) as reader:
        events = list(reader.poll())
        assert reader.complete
    assert [e.sql for e in events if isinstance(e, StatementSent)] == ["SELECT 1"] * 3
    assert sum(isinstance(e, ResultReceived) for e in events) == 3
    assert isinstance(events[-1], SessionEnded) and events[-1].end == "client_terminate"


async def test_long_sessions_journal_checkpoints(settings: RecordingSettings) -> None:
    journal = FakeJournal()
    hook = make_hook(settings, journal, checkpoint_interval_s=0.0)
    await hook.session_started(session_info())
    await run_statement(hook, 1)
    await hook.recorder.flush()
    checkpoint = journal.of("recording_checkpoint")[-1]
    path = settings.dir / str(checkpoint["file"])
    prefix = path.read_bytes()[:int(str(checkpoint["bytes"]))]
    assert checkpoint["sha256"] == hashlib.sha256(prefix).hexdigest()
    await hook.recorder.close()


def failing_writes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Make the disk thread's writes fail with ENOSPC while the returned flag is set."""
    full = [True]
    real = writer._pwrite_all

    def pwrite(fd: int, data: bytes, offset: int) -> None:
        if full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data, offset)

    monkeypatch.setattr(writer, "_pwrite_all", pwrite)
    return full


async def test_required_refuses_statements_while_it_cannot_write(
        settings: RecordingSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = FakeJournal()
    hook = make_hook(settings, journal)
    info = session_info()
    await hook.session_started(info)  # the header is written before the disk fills up
    full = failing_writes(monkeypatch)
    await run_statement(hook, 1)
    await hook.recorder.flush()
    with pytest.raises(RecordingFailed) as refused:
        await run_statement(hook, 2)
    assert refused.value.sqlstate == "58030"
    assert len(journal.of("recording_failed")) == 1
    await hook.recorder.flush()  # still failing: journaled once only
    assert len(journal.of("recording_failed")) == 1
    full[0] = False
    await hook.recorder.flush()  # the same chunks, written where they belong
    await run_statement(hook, 3)
    hook.session_ended(info, summary := SessionSummary())
    await hook.recorder.close()
    binding = summary.annotations["recording"]
    assert isinstance(binding, dict)
    data = (settings.dir / str(binding["file"])).read_bytes()
    assert hashlib.sha256(data).hexdigest() == binding["sha256"]


async def test_not_required_goes_on_unrecorded(settings: RecordingSettings,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    settings = dataclasses.replace(settings, required=False)
    journal = FakeJournal()
    hook = make_hook(settings, journal)
    info = session_info()
    await hook.session_started(info)
    failing_writes(monkeypatch)
    await run_statement(hook, 1)
    await hook.recorder.flush()
    await run_statement_unrecorded(hook)  # not refused, and no longer recorded
    hook.session_ended(info, summary := SessionSummary())
    await hook.recorder.close()
    assert journal.of("recording_failed")[0]["required"] is False
    assert isinstance(summary.annotations["recording"], dict)
    assert "failed" in summary.annotations["recording"]


@pytest.mark.parametrize("required", [True, False])
async def test_a_session_that_cannot_be_recorded(settings: RecordingSettings, tmp_path: Path,
                                                 required: bool) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    settings = RecordingSettings(dir=blocked, key_file=settings.key_file, required=required)
    journal = FakeJournal()
    hook = make_hook(settings, journal)
    if required:
        with pytest.raises(RecordingUnavailable):
            await hook.session_started(session_info())
    else:
        await hook.session_started(session_info())
        await run_statement_unrecorded(hook)
        assert journal.of("recording_failed")[0]["session"] == session_info().session_id
    await hook.recorder.close()


async def run_statement_unrecorded(hook: RecorderHook) -> None:
    statement = Statement(session_info(), 1, Phase.SIMPLE, "SELECT 1")
    assert await hook.before_statement(statement) is None
    assert statement.capture_rows == 0


def test_no_key_no_gateway(tmp_path: Path) -> None:
    settings = RecordingSettings(dir=tmp_path, key_file=tmp_path / "missing.key")
    with pytest.raises(ConfigError, match="cannot read recording key"):
        make_hook(settings, FakeJournal())
    with pytest.raises(ConfigError, match="PHIGATE_TEST_KEY is not set"):
        RecorderHook(RecordingSettings(dir=tmp_path, key_env="PHIGATE_TEST_KEY"),
                     FakeJournal(), environ={})  # type: ignore[arg-type]
