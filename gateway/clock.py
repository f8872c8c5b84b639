"""The gateway's wall clock, for policy time windows and budgets.

``PHIGATE_TEST_NOW`` (an ISO 8601 time with offset) starts the clock at that
moment instead of now; it keeps ticking from there. It exists so end-to-end
tests can exercise time windows; the gateway logs a warning when it is set.
"""

from __future__ import annotations

import datetime as dt
import os
import time

TEST_NOW_ENV = "PHIGATE_TEST_NOW"


class Clock:
    def __init__(self, start: dt.datetime | None = None) -> None:
        self._offset = 0.0
        if start is not None:
            self._offset = start.timestamp() - time.time()

    @classmethod
    def from_environment(cls) -> Clock:
        text = os.environ.get(TEST_NOW_ENV)
        if not text:
            return cls()
        start = dt.datetime.fromisoformat(text)
        if start.utcoffset() is None:
            raise ValueError(f"{TEST_NOW_ENV} needs a UTC offset, e.g. 2026-11-30T23:00:00-05:00")
        return cls(start)

    @property
    def shifted(self) -> bool:
        return self._offset != 0.0

    def seconds(self) -> float:
        """``now()`` as a POSIX timestamp (cheaper: no datetime is made)."""
        return time.time() + self._offset

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(time.time() + self._offset, dt.UTC)
