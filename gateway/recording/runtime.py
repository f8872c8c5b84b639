"""What ``run_gateway`` starts once the hooks exist and stops after sessions drained.

The audit spool drainer always runs (auditors' ``sessions list`` and
``replay`` must be journaled whether or not this gateway records); the
recorder's flusher and disk thread run when a :class:`RecorderHook` is in the
chain. Closing order matters: recordings are flushed before the journal
closes, so every ``recording_failed`` and checkpoint entry still lands in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from ..journal import Journal
from ..proxy.hooks import Hook
from .hook import RecorderHook
from .spool import SpoolDrainer, spool_dir


class RecordingServices:
    def __init__(self, journal: Journal, hooks: Sequence[Hook]) -> None:
        self._recorders = [h.recorder for h in hooks if isinstance(h, RecorderHook)]
        self._spool = SpoolDrainer(journal, spool_dir(journal.settings.dir))

    async def __aenter__(self) -> RecordingServices:
        await self._spool.start()
        for recorder in self._recorders:
            await recorder.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        for recorder in self._recorders:
            await recorder.close()
        await self._spool.stop()
