"""The step budget of one decision: no statement may keep the engine busy without bound.

Every walk the engine makes over catalog data (view, materialized-view, partition and
inheritance dependencies) takes one step per relation it visits and per dependency it follows,
from one :class:`Steps` shared by the whole query string. Past the limit the walk stops with
:class:`StepsExceeded` and ``policies.engine`` refuses the statement (SQLSTATE 54001,
statement_too_complex) instead of deciding it; the gateway journals that refusal like any other.
The budget also bounds the depth and the size of every walk, so no catalog, however large or
cyclic, can make a decision unbounded.
"""

from __future__ import annotations

DEFAULT_MAX_STEPS = 100_000  # ~20 ms of walking; a catalog of 100 000 views still fits


class StepsExceeded(Exception):
    """A decision needed more steps than its budget allows."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} steps")
        self.limit = limit


class Steps:
    """A countdown of the steps one decision may still take."""

    __slots__ = ("left", "limit")

    def __init__(self, limit: int = DEFAULT_MAX_STEPS) -> None:
        self.limit = limit
        self.left = limit

    def take(self, count: int = 1) -> None:
        self.left -= count
        if self.left < 0:
            raise StepsExceeded(self.limit)
