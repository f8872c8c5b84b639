"""Row widths of the upstream's tables, for the byte limit derived from ``max_rows``.

Driven by the policy hook: at a database's first session it runs
``policies.sizes.ROW_WIDTHS_SQL`` (average column widths from ``pg_stats``) on a short-lived
upstream connection with the service credential, and caches the result per database, as the
view dependencies are cached. A failure leaves the mapping empty: every table then counts
``policies.sizes.DEFAULT_ROW_WIDTH``, and the byte limit still holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from policies.sizes import ROW_WIDTHS_SQL, build_row_widths

from ..settings.config import DatabaseSettings
from .catalog import query_rows

Widths = Mapping[str, int]


class RowWidthCatalog:
    """Per-database cache of row widths; forgotten after DDL like view dependencies."""

    def __init__(self, max_message_size: int) -> None:
        self._max = max_message_size
        self._cache: dict[str, Widths] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def widths(self, db: DatabaseSettings, dbname: str) -> Widths:
        key = f"{db.name}/{dbname}"
        if key in self._cache:
            return self._cache[key]
        async with self._locks.setdefault(key, asyncio.Lock()):
            if key not in self._cache:
                rows = await query_rows(db, dbname, ROW_WIDTHS_SQL, self._max)
                self._cache[key] = build_row_widths(
                    (str(a), str(b), str(c)) for a, b, c in rows if c is not None)
            return self._cache[key]

    def invalidate(self, db: DatabaseSettings, dbname: str) -> None:
        self._cache.pop(f"{db.name}/{dbname}", None)
