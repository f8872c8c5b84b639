"""Writing recordings: per-session sealing on the event loop, file I/O on one disk thread.

:class:`SessionRecording` is one session's file: the events the hook queued,
the chunks sealed from them but not yet durable, and the running SHA-256 of
every byte sealed so far (so the digest for the journal's ``session_end`` is
known the moment the last chunk is sealed, without waiting for the disk).

:class:`Recorder` owns the files and the flusher task: at least every
``flush_interval_s`` (sooner when a session queues many events or ends) it
seals what each session queued and hands the chunks to a single disk thread,
which ``pwrite``s them at their offsets and ``fdatasync``s each file. A crash
loses at most the chunks of the last interval, and ``replay --follow`` sees
chunks within an interval of the statements. Positional writes make a retry
after a failed write idempotent. Driven by :class:`~.hook.RecorderHook`;
started and closed by :class:`~.runtime.RecordingServices`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..journal import Journal
from ..journal.segments import fsync_dir
from ..proxy.hooks import SessionInfo
from ..settings.config import RecordingSettings
from .events import Queued, encode_events, session_record
from .format import SUFFIX, Sealer, new_header
from .keys import MasterKey

log = logging.getLogger("phigate.recording")

# Plaintext per chunk before a new chunk is started: bounds what a reader must hold.
CHUNK_TARGET = 1024 * 1024
# A session with this many queued events, or captured rows, is sealed before the interval is
# up: what waits in memory stays bounded however fast the statements come.
MAX_QUEUED_EVENTS = 4096
MAX_QUEUED_ROWS = 20_000
# How often a long session's digest-so-far goes to the journal (``recording_checkpoint``).
CHECKPOINT_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class SealedChunk:
    data: bytes = field(repr=False)
    offset: int  # where in the file it goes
    chunks: int  # chunks in the file once it is written
    digest: str  # SHA-256 of the file up to the end of this chunk


def relative_path(session_id: str, started_at: float) -> str:
    """``2026-11-30/3f2a….phirec``: one directory per UTC day keeps directories small."""
    day = dt.datetime.fromtimestamp(started_at, dt.UTC).strftime("%Y-%m-%d")
    return f"{day}/{session_id}{SUFFIX}"


class SessionRecording:
    """One session's recording file, as the event loop sees it."""

    __slots__ = ("session_id", "file", "fd", "events", "started", "_sealer", "_hash", "size",
                 "unwritten", "durable_size", "durable_chunks", "durable_digest", "error",
                 "ended", "abandoned", "last_checkpoint", "queued_rows")

    def __init__(self, session_id: str, file: str, fd: int, header: bytes, data_key: bytes,
                 started: float) -> None:
        self.session_id = session_id
        self.file = file  # relative to recordings.dir, as the journal names it
        self.fd: int | None = fd
        self.events: list[Queued] = []
        self.queued_rows = 0  # captured rows waiting in ``events``
        self.started = started  # time.monotonic() at session start: events carry offsets
        self._sealer = Sealer(header, data_key)
        self._hash = hashlib.sha256(header)
        self.size = len(header)  # bytes sealed so far, header included
        self.unwritten: deque[SealedChunk] = deque()
        self.durable_size = len(header)
        self.durable_chunks = 0
        self.durable_digest = self._hash.hexdigest()
        self.error: str | None = None  # the last write error, while writes are failing
        self.ended = False  # the final chunk is sealed
        self.abandoned = False  # gave up after a failure (recordings.required: false)
        self.last_checkpoint = started

    @property
    def chunks(self) -> int:
        return self._sealer.index

    def now(self) -> float:
        return time.monotonic() - self.started

    def seal(self, *, final: bool = False) -> None:
        """Seal every queued event into chunks; ``final`` marks the last one as the end."""
        events, self.events = self.events, []
        self.queued_rows = 0
        plaintexts = list(encode_events(events, CHUNK_TARGET))
        for i, plaintext in enumerate(plaintexts):
            data = self._sealer.seal(plaintext, final=final and i == len(plaintexts) - 1)
            self._hash.update(data)
            self.unwritten.append(SealedChunk(data, self.size, self._sealer.index,
                                              self._hash.hexdigest()))
            self.size += len(data)
        self.ended = self.ended or final

    def binding(self) -> dict[str, object]:
        """What the journal's ``session_end`` says about the file, for ``verify --recordings``."""
        return {"file": self.file, "sha256": self._hash.hexdigest(), "bytes": self.size,
                "chunks": self.chunks}

    def written(self, count: int) -> None:
        """The first ``count`` unwritten chunks are durable."""
        for _ in range(count):
            chunk = self.unwritten.popleft()
            self.durable_size = chunk.offset + len(chunk.data)
            self.durable_chunks = chunk.chunks
            self.durable_digest = chunk.digest


class Recorder:
    """The gateway's open recordings, the flusher task and the disk thread."""

    def __init__(self, settings: RecordingSettings, key: MasterKey, journal: Journal, *,
                 checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self.settings = settings
        self._key = key
        self._journal = journal
        self._checkpoint_interval_s = checkpoint_interval_s
        # One thread: a file's chunks are written in order, and the loop never waits on disk.
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phigate-recording")
        self._open: dict[str, SessionRecording] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._flushing = asyncio.Lock()  # one flush at a time: chunks are popped once written

    @property
    def key_id(self) -> str:
        return self._key.key_id

    # ---------------------------------------------------------------- lifetime

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self.settings.dir.mkdir, mode=0o700, parents=True,
                                    exist_ok=True)
        except OSError as e:  # each session then fails as recordings.required says
            log.error("recordings directory %s cannot be created: %s", self.settings.dir, e)
        self._task = asyncio.create_task(self._run(), name="phigate-recording-flusher")

    async def close(self) -> None:
        """Seal and write what is left; sessions still open stay incomplete (no final chunk)."""
        if self._task is not None:
            # Asked to stop rather than cancelled: a flush in progress completes, and 3.11's
            # wait_for cannot swallow a cancellation that races with a wake-up.
            self._closing = True
            self._wake.set()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()
        for recording in list(self._open.values()):
            if recording.unwritten:
                log.error("recording %s: %d chunks could not be written: %s", recording.file,
                          len(recording.unwritten), recording.error)
            self._forget(recording)
        self._disk.shutdown(wait=True)

    async def _run(self) -> None:
        interval = self.settings.flush_interval_s
        while not self._closing:
            try:
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if self._closing:
                return
            try:
                await self.flush()
            except Exception:  # the flusher must outlive any one bad session
                log.exception("recording flush failed")

    def wake(self) -> None:
        """Flush now rather than at the end of the interval."""
        self._wake.set()

    # ---------------------------------------------------------------- sessions

    async def open(self, info: SessionInfo, capture_rows: int) -> SessionRecording:
        """Create the session's file (durably) with its header; OSError if it cannot be."""
        started = time.monotonic()
        file = relative_path(info.session_id, info.started_at or time.time())
        header, data_key = new_header(info.session_id, info.started_at, self._key)
        path = self.settings.dir / file
        fd = await asyncio.get_running_loop().run_in_executor(self._disk, _create, path, header)
        recording = SessionRecording(info.session_id, file, fd, header, data_key, started)
        recording.events.append(session_record(0.0, info, capture_rows))
        self._open[info.session_id] = recording
        return recording

    def abandon(self, recording: SessionRecording) -> None:
        """Stop recording a session (its file stays as far as it got)."""
        recording.abandoned = True
        recording.events.clear()
        recording.unwritten.clear()
        self._forget(recording)

    # ---------------------------------------------------------------- flushing

    async def flush(self) -> None:
        """Seal every session's queued events and make them durable."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        jobs: list[tuple[SessionRecording, int, list[SealedChunk]]] = []
        for recording in self._open.values():
            if recording.events and not recording.ended:
                recording.seal()
            if recording.unwritten and recording.fd is not None:
                jobs.append((recording, recording.fd, list(recording.unwritten)))
        if jobs:
            results = await asyncio.get_running_loop().run_in_executor(
                self._disk, _write_all, [(fd, chunks) for _, fd, chunks in jobs])
            for (recording, _, chunks), error in zip(jobs, results, strict=True):
                self._written(recording, len(chunks), error)
        for recording in list(self._open.values()):
            if recording.ended and not recording.unwritten:
                self._forget(recording)

    def _written(self, recording: SessionRecording, count: int, error: str | None) -> None:
        if recording.abandoned:
            return
        if error is not None:
            self._failed(recording, error)
            return
        recording.written(count)
        if recording.error is not None:
            log.warning("recording %s: writing again after: %s", recording.file, recording.error)
            recording.error = None
        now = time.monotonic()
        if not recording.ended and now - recording.last_checkpoint >= self._checkpoint_interval_s:
            recording.last_checkpoint = now
            self._journal.append_later("recording_checkpoint", {
                "session": recording.session_id, "file": recording.file,
                "bytes": recording.durable_size, "chunks": recording.durable_chunks,
                "sha256": recording.durable_digest})

    def _failed(self, recording: SessionRecording, error: str) -> None:
        first = recording.error is None
        recording.error = error
        if not first:
            return  # still failing; already journaled and logged
        required = self.settings.required
        log.error("recording %s cannot be written (%s); %s", recording.file, error,
                  "refusing the session's statements" if required else "no longer recording it")
        self._journal.append_later("recording_failed", {
            "session": recording.session_id, "file": recording.file, "error": error,
            "required": required})
        if not required:
            self.abandon(recording)

    def _forget(self, recording: SessionRecording) -> None:
        self._open.pop(recording.session_id, None)
        fd, recording.fd = recording.fd, None
        if fd is not None:
            # Closed on the disk thread, after any write to it already queued there: closing
            # it here could let a new file reuse the number under a write in flight.
            self._disk.submit(_close, fd, recording.file)


# ---------------------------------------------------------------- on the disk thread


def _create(path: Path, header: bytes) -> int:
    """A new recording file holding ``header``; the file and its name are durable."""
    created = not path.parent.is_dir()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        _pwrite_all(fd, header, 0)
        os.fdatasync(fd)
        fsync_dir(path.parent)
        if created:
            fsync_dir(path.parent.parent)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _close(fd: int, file: str) -> None:
    try:
        os.close(fd)
    except OSError as e:
        log.error("recording %s: close failed: %s", file, e)


def _write_all(jobs: list[tuple[int, list[SealedChunk]]]) -> list[str | None]:
    """Write each file's chunks and sync it; per file, None or why it failed."""
    results: list[str | None] = []
    for fd, chunks in jobs:
        try:
            for chunk in chunks:
                _pwrite_all(fd, chunk.data, chunk.offset)
            os.fdatasync(fd)
            results.append(None)
        except OSError as e:
            results.append(e.strerror or str(e))
    return results


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
