"""The integrity panel's "verify now": ``phigate journal verify`` in a background thread.

Runs exactly :func:`gateway.journal.verify.verify_journal` (with the checkpoint copies as
witnesses) and then :func:`gateway.recording.binding.check_all` on the recordings, publishing
progress as it goes; one run at a time. The last result stays for the panel. Driven by
``routes``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..journal.verify import VerifyReport, verify_journal
from ..recording.binding import Check, check_all

log = logging.getLogger("phigate.console")


@dataclass(slots=True)
class VerifyRun:
    started: float = field(default_factory=time.time)
    done_bytes: int = 0
    total_bytes: int = 0
    phase: str = "journal"  # journal, recordings, done, error
    report: VerifyReport | None = None
    recordings: list[Check] | None = None
    finished: float | None = None
    error: str | None = None

    @property
    def fraction(self) -> float:
        if self.phase == "done":
            return 1.0
        return self.done_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def finished_iso(self) -> str | None:
        if self.finished is None:
            return None
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.finished))

    @property
    def recording_failures(self) -> list[Check]:
        return [c for c in self.recordings or [] if not c.status.ok]


class Verifier:
    def __init__(self, journal_dir: Path, key: Ed25519PublicKey | None,
                 witness: Path | None, recordings: Path | None) -> None:
        self._journal_dir = journal_dir
        self._key = key
        self._witness = witness
        self._recordings = recordings
        self.last: VerifyRun | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        return self._key is not None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> VerifyRun:
        if self.running and self.last is not None:
            return self.last
        run = self.last = VerifyRun()
        self._task = asyncio.create_task(self._run(run), name="phigate-console-verify")
        return run

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, run: VerifyRun) -> None:
        try:
            await asyncio.to_thread(self._verify, run)
            run.phase = "done"
        except Exception as e:  # shown on the panel, in red
            log.exception("verification failed to run")
            run.phase, run.error = "error", str(e)
        run.finished = time.time()

    def _verify(self, run: VerifyRun) -> None:
        if self._key is None:
            raise RuntimeError("no public key to verify the journal with")

        def progress(done: int, total: int) -> None:
            run.done_bytes, run.total_bytes = done, total

        run.report = verify_journal(self._journal_dir, self._key, witness_dir=self._witness,
                                    progress=progress)
        if self._recordings is not None and self._recordings.is_dir():
            run.phase = "recordings"
            run.recordings, _ = check_all(self._journal_dir, self._recordings)
