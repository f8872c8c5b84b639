"""The recorder hook: what the relay shows it goes into the session's recording.

After the policy and journal hooks in the chain, so it sees their verdict,
refusals included. Per statement it asks the relay to capture result rows and
queues a flat record of the statement and of its outcome (the raw frames
included, undecoded); packing, compression, encryption and I/O happen in the
:class:`~.writer.Recorder`'s flusher. Failure policy, as for the journal:
with ``recordings.required`` a session that cannot be recorded is refused and
so is every statement while its recording cannot be written; without it the
session goes on unrecorded and a ``recording_failed`` entry is journaled once.
At session end the final chunk is sealed at once, so the recording's SHA-256,
size and chunk count go into the journal's ``session_end`` entry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from time import monotonic

from ..errors import ConfigError
from ..journal import Journal
from ..proxy.hooks import Hook, Outcome, Phase, SessionInfo, SessionSummary, Statement, Verdict
from ..settings.config import RecordingSettings, Settings
from .errors import RecordingFailed, RecordingKeyError, RecordingUnavailable
from .events import JOURNAL_FIELD, end_record, result_record, statement_record
from .keys import load_master_key
from .writer import (
    CHECKPOINT_INTERVAL_S,
    MAX_QUEUED_EVENTS,
    MAX_QUEUED_ROWS,
    Recorder,
    SessionRecording,
)

log = logging.getLogger("phigate.recording")


class RecorderHook(Hook):
    def __init__(self, settings: RecordingSettings, journal: Journal, *,
                 source: str | None = None, environ: Mapping[str, str] | None = None,
                 checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        try:
            key = load_master_key(settings, environ)
        except RecordingKeyError as e:  # at start-up: the gateway does not run unrecorded
            raise ConfigError(str(e), file=source, key="recordings") from e
        self.settings = settings
        self.capture_rows = settings.capture_rows
        self.recorder = Recorder(settings, key, journal,
                                 checkpoint_interval_s=checkpoint_interval_s)
        self._journal = journal
        self._sessions: dict[str, SessionRecording] = {}

    def config_loaded(self, settings: Settings) -> None:
        new = settings.recordings
        if new is None or (new.dir, new.key_file, new.key_env) != (
                self.settings.dir, self.settings.key_file, self.settings.key_env):
            log.warning("recordings: dir, key and enabling/disabling take effect on restart")
        if new is not None:
            self.capture_rows = new.capture_rows

    async def session_started(self, session: SessionInfo) -> None:
        try:
            recording = await self.recorder.open(session, self.capture_rows)
        except OSError as e:
            self._cannot_record(session, e.strerror or str(e))
            return
        try:
            await self._journal.append("recording_started", {
                "session": session.session_id, "file": recording.file,
                "key_id": self.recorder.key_id})
        except BaseException:  # the session is refused (journal failure): nothing to record
            self.recorder.abandon(recording)
            raise
        self._sessions[session.session_id] = recording

    def _cannot_record(self, session: SessionInfo, error: str) -> None:
        log.error("session %s cannot be recorded: %s", session.session_id, error)
        if self.settings.required:
            raise RecordingUnavailable("phigate: the session cannot be recorded, so it is "
                                       "refused; try again later")
        self._journal.append_later("recording_failed", {
            "session": session.session_id, "error": error, "required": False})

    async def before_statement(self, statement: Statement) -> Verdict | None:
        recording = self._sessions.get(statement.session.session_id)
        if recording is None or recording.abandoned:
            return None
        if recording.error is not None and self.settings.required:
            raise RecordingFailed("phigate: the session recording cannot be written; "
                                  "statement refused")
        if statement.phase is Phase.PARSE and statement.verdict.refusal is None:
            return None  # nothing runs at Parse; its Execute is recorded
        statement.capture_rows = self.capture_rows
        recording.events.append(statement_record(monotonic() - recording.started, statement))
        return None

    def after_statement(self, statement: Statement, outcome: Outcome) -> None:
        recording = self._sessions.get(statement.session.session_id)
        if recording is None or recording.abandoned:
            return
        events = recording.events
        events.append(result_record(monotonic() - recording.started, statement.number, outcome))
        if outcome.sample:
            recording.queued_rows += len(outcome.sample)
        if len(events) >= MAX_QUEUED_EVENTS or recording.queued_rows >= MAX_QUEUED_ROWS:
            self.recorder.wake()

    def session_ended(self, session: SessionInfo, summary: SessionSummary) -> None:
        recording = self._sessions.pop(session.session_id, None)
        if recording is None:
            return
        if recording.abandoned:
            summary.annotations[JOURNAL_FIELD] = {"file": recording.file,
                                               "failed": recording.error or "abandoned"}
            return
        recording.events.append(end_record(recording.now(), summary))
        recording.seal(final=True)
        summary.annotations[JOURNAL_FIELD] = recording.binding()
        self.recorder.wake()  # the end is on disk within moments, not at the next interval
