"""Shipping sealed evidence to the archive: segments, checkpoints, finished recordings.

:class:`Archiver` runs inside ``phigate serve`` (started by ``service``): every
``archive.upload.interval`` it lists what is sealed and not yet archived,
uploads it on ``upload.parallel`` worker threads with retention and
checksums, then journals one ``archived`` entry per object (key, version id,
sha256, retain-until) so the next signed checkpoint vouches for it. It never
blocks a statement: an unreachable store only grows the backlog, which
``lagging()`` reports (the ``journal`` alert and ``/readyz`` use it) once the
oldest waiting segment is older than ``archive.max_delay``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..journal import Journal, segments
from ..journal.canonical import format_time
from ..journal.checkpoints import Checkpoint
from ..recording.errors import RecordingError
from ..recording.keys import MasterKey
from ..recording.reader import RecordingReader
from . import s3
from .errors import ArchiveError
from .settings import ArchiveSettings
from .state import ArchivedObject, ArchiveState, checkpoint_seq_of

log = logging.getLogger("phigate.archive")

# Object kinds; each lives under <prefix>/<kind>s/ in the bucket.
SEGMENT, CHECKPOINT, RECORDING = "segment", "checkpoint", "recording"
CHECKPOINT_EVERY_S = 300.0  # idle journals still gain heartbeats; ship a checkpoint this often
RECORDING_SETTLE_S = 2.0  # a recording untouched this long may be finished: look inside
ABANDONED_S = 86400.0  # a recording never finished (gateway killed) goes after a day


@dataclass(frozen=True, slots=True)
class Candidate:
    kind: str
    key: str
    path: Path


class Archiver:
    def __init__(self, settings: ArchiveSettings, journal: Journal, *,
                 recordings: Path | None = None, recording_key: MasterKey | None = None
                 ) -> None:
        self.settings = settings
        self.journal = journal
        self._dir = journal.settings.dir
        self._recordings = recordings
        self._recording_key = recording_key
        self._client: Any = None
        self._state = ArchiveState(str(settings.location), settings.endpoint, settings.region)
        self._pool = ThreadPoolExecutor(max_workers=settings.parallel,
                                        thread_name_prefix="phigate-archive")
        self._task: asyncio.Task[None] | None = None
        self._pass = asyncio.Lock()  # one pass at a time (the task, and callers like the drill)
        self._unfinished: dict[Path, float] = {}  # recording → mtime when found unfinished
        self._checkpoint_at = 0.0
        self.backlog = 0  # sealed segments waiting, after the last pass
        self.oldest_waiting: float | None = None  # sealing time (epoch) of the oldest
        self.last_error: str | None = None
        self.uploaded = 0
        self.failures = 0

    async def start(self) -> None:
        """Check the bucket (ArchiveUnusable refuses the start) and begin shipping."""
        self._client = s3.make_client(self.settings, pool=self.settings.parallel + 2)
        await asyncio.to_thread(s3.check_bucket, self._client, self.settings.location,
                                self.settings.credentials)
        saved = await asyncio.to_thread(ArchiveState.load, self._dir)
        if saved is not None and saved.url == self._state.url:
            self._state.objects, self._state.checkpoint_seq = saved.objects, saved.checkpoint_seq
            self._state.journal_seq = saved.journal_seq
        # Entries journaled after the last save (a kill in between) must not be made twice.
        if await asyncio.to_thread(self._state.catch_up, self._dir):
            await asyncio.to_thread(self._state.save, self._dir)
        self._task = asyncio.create_task(self._run(), name="phigate-archive-uploader")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def lagging(self) -> str | None:
        """Why the archive is behind, once a sealed segment waited longer than max_delay."""
        if self.oldest_waiting is None:
            return None
        waited = time.time() - self.oldest_waiting
        if waited < self.settings.max_delay_s:
            return None
        why = f" ({self.last_error})" if self.last_error else ""
        return (f"{self.backlog} sealed journal segments not archived to "
                f"{self.settings.location}, the oldest for {waited:.0f}s{why}")

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as e:  # a bug must not stop shipping for good: log, retry
                log.exception("archive pass failed: %s", e)
            await asyncio.sleep(self.settings.interval_s)

    async def run_once(self) -> int:
        """One pass: upload what waits, journal it; returns the number of objects archived."""
        async with self._pass:
            return await self._pass_once()

    async def _pass_once(self) -> int:
        waiting = await asyncio.to_thread(self._waiting)
        done = await self._ship(waiting)
        shipped_segment = any(c.kind == SEGMENT for c, _ in done)
        checkpoint = await asyncio.to_thread(self._checkpoint_due, shipped_segment)
        if checkpoint is not None:
            done += await self._ship([checkpoint])
        for candidate, obj in done:
            seq = await self.journal.append("archived", obj.fields(self._state.url))
            if candidate.kind == CHECKPOINT:
                self._checkpoint_at = time.monotonic()
            self._state.record(seq, obj, checkpoint_seq_of(obj.key)
                               if candidate.kind == CHECKPOINT else None)
        if done:
            await asyncio.to_thread(self._state.save, self._dir)
        await asyncio.to_thread(self._measure)
        return len(done)

    async def _ship(self, waiting: list[Candidate]) -> list[tuple[Candidate, ArchivedObject]]:
        loop = asyncio.get_running_loop()
        futures = [loop.run_in_executor(self._pool, self._upload, c) for c in waiting]
        done = []
        for candidate, result in zip(waiting, await asyncio.gather(*futures,
                                                                   return_exceptions=True),
                                     strict=True):
            if isinstance(result, ArchiveError):
                self._failed(candidate, result)
            elif isinstance(result, BaseException):
                raise result
            else:
                self.uploaded += 1
                done.append((candidate, result))
        if done and len(done) == len(waiting) and self.last_error is not None:
            log.warning("archive %s reachable again", self.settings.location)
            self.last_error = None
        return done

    def _failed(self, candidate: Candidate, error: ArchiveError) -> None:
        self.failures += 1
        if self.last_error is None:
            log.error("archive upload of %s failed: %s (retrying every %gs; logged again "
                      "when it recovers)", candidate.key, error.message, self.settings.interval_s)
        self.last_error = error.message

    def _upload(self, candidate: Candidate) -> ArchivedObject:
        """Worker thread: read, PUT with retention, return what to journal."""
        data = candidate.path.read_bytes()
        until = s3.retain_until(self.settings)
        info = s3.put_locked(self._client, self.settings, candidate.key, data, until)
        locked_until = info.retain_until or until
        return ArchivedObject(
            kind=candidate.kind, key=candidate.key, version_id=info.version_id,
            sha256=info.sha256 or "", size=len(data),
            retain_until=format_time(int(locked_until.timestamp() * 1e9)),
            mode=info.mode or self.settings.mode.upper())

    # -- what waits (blocking; worker thread) ------------------------------------------

    def _waiting(self) -> list[Candidate]:
        location = self.settings.location
        found = [Candidate(SEGMENT, location.key(f"segments/{s.name}"), s.path)
                 for s in segments.list_segments(self._dir) if segments.is_sealed(s.path)]
        found += self._finished_recordings()
        return [c for c in found if c.key not in self._state.objects]

    def _checkpoint_due(self, shipped_segment: bool) -> Candidate | None:
        path = self._dir / segments.CHECKPOINT_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        cp = Checkpoint.from_json(data)
        overdue = time.monotonic() - self._checkpoint_at >= CHECKPOINT_EVERY_S
        if cp.seq <= self._state.checkpoint_seq or not (shipped_segment or overdue):
            return None
        # Uploaded from a private copy: checkpoint.json is replaced every second.
        copy = self._dir / f".archive-checkpoint-{cp.seq}.tmp"
        segments.atomic_write(copy, data, 0o600)
        return Candidate(CHECKPOINT, self.settings.location.key(
            f"checkpoints/{cp.seq:020d}.json"), copy)

    def _finished_recordings(self) -> list[Candidate]:
        if self._recordings is None or self._recording_key is None:
            return []
        found = []
        now = time.time()
        for path in sorted(self._recordings.glob("*/*.phirec")):
            relative = path.relative_to(self._recordings).as_posix()
            key = self.settings.location.key(f"recordings/{relative}")
            if key in self._state.objects:
                continue
            mtime = path.stat().st_mtime
            if now - mtime < RECORDING_SETTLE_S or self._unfinished.get(path) == mtime:
                continue
            if now - mtime >= ABANDONED_S or _finished(path, self._recording_key):
                self._unfinished.pop(path, None)
                found.append(Candidate(RECORDING, key, path))
            else:
                self._unfinished[path] = mtime
        return found

    def _measure(self) -> None:
        waiting = [s for s in segments.list_segments(self._dir) if segments.is_sealed(s.path)
                   and self.settings.location.key(f"segments/{s.name}")
                   not in self._state.objects]
        for leftover in self._dir.glob(".archive-checkpoint-*.tmp"):
            leftover.unlink(missing_ok=True)
        self.backlog = len(waiting)
        self.oldest_waiting = min((os.stat(s.path).st_mtime for s in waiting), default=None)


def _finished(path: Path, key: MasterKey) -> bool:
    """Has the recording's final chunk been written? (It authenticates every chunk.)"""
    try:
        with RecordingReader(path, key) as reader:
            reader.open()
            for _ in reader.poll():
                pass
            return reader.complete
    except (RecordingError, OSError) as e:
        log.warning("recording %s cannot be read for archiving: %s", path, e)
        return False

