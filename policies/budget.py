"""Per-identity PHI row budget over a sliding hour.

The gateway calls ``record(identity, rows, now)`` after each statement that returned rows of PHI
tables (across all of the identity's sessions) and ``used(identity, now)`` before deciding, and
puts the result in ``RequestContext.phi_rows_last_hour``. State is in memory; time is passed in.
Rows are kept in one-second buckets, so memory per identity is bounded by the window length.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque

WINDOW = dt.timedelta(hours=1)


class _Ledger:
    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets: deque[tuple[int, int]] = deque()  # (second, rows), oldest first
        self.total = 0


class PhiBudget:
    """Rows of PHI returned per identity within the last ``window``."""

    def __init__(self, window: dt.timedelta = WINDOW) -> None:
        if window <= dt.timedelta(0):
            raise ValueError("window must be positive")
        self._window = math.ceil(window.total_seconds())
        self._ledgers: dict[str, _Ledger] = {}

    def record(self, identity: str, rows: int, now: dt.datetime) -> None:
        if rows < 0:
            raise ValueError("rows must be >= 0")
        if rows == 0:
            return
        second = _second(now)
        ledger = self._ledgers.setdefault(identity, _Ledger())
        self._expire(ledger, second)
        if ledger.buckets and ledger.buckets[-1][0] >= second:
            # same second (or a clock that stepped back): add to the newest bucket
            last_second, last_rows = ledger.buckets.pop()
            ledger.buckets.append((last_second, last_rows + rows))
        else:
            ledger.buckets.append((second, rows))
        ledger.total += rows

    def used(self, identity: str, now: dt.datetime) -> int:
        second = _second(now)
        ledger = self._ledgers.get(identity)
        if ledger is None:
            return 0
        self._expire(ledger, second)
        if not ledger.buckets:
            del self._ledgers[identity]
        return ledger.total

    def prune(self, now: dt.datetime) -> None:
        """Forget identities with nothing left in the window (call now and then)."""
        for identity in list(self._ledgers):
            self.used(identity, now)

    def _expire(self, ledger: _Ledger, second: int) -> None:
        horizon = second - self._window
        while ledger.buckets and ledger.buckets[0][0] <= horizon:
            ledger.total -= ledger.buckets.popleft()[1]


def _second(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    return math.floor(moment.timestamp())
