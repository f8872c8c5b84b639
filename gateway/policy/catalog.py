"""Reading the upstream's catalog with the service credential (view dependencies).

Driven by the policy hook: at a database's first session and after DDL it runs
``policies.views.CATALOG_SQL`` on a short-lived upstream connection and caches
the result per database, so reading a view of ``patients`` counts as reading
``patients``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from policies.views import CATALOG_SQL, build_view_dependencies
from protocols.postgres import messages as m
from protocols.postgres.decoder import decode_backend
from protocols.postgres.encoder import encode

from ..proxy.upstream import connect_upstream
from ..settings.config import DatabaseSettings

log = logging.getLogger("phigate.catalog")

Dependencies = Mapping[str, frozenset[str]]


async def query_rows(db: DatabaseSettings, dbname: str, sql: str, max_message_size: int
                     ) -> list[tuple[str | None, ...]]:
    """Run one read-only query upstream; text-format rows."""
    upstream = await connect_upstream(db, dbname, {"application_name": "phigate/catalog"},
                                      max_message_size)
    stream = upstream.stream
    try:
        await stream.send(encode(m.Query(sql=sql)))
        rows: list[tuple[str | None, ...]] = []
        while True:
            message = decode_backend(await stream.read_frame())
            if isinstance(message, m.DataRow):
                rows.append(tuple(None if v is None else v.decode("utf-8")
                                  for v in message.values))
            elif isinstance(message, m.ErrorResponse):
                raise RuntimeError(f"catalog query failed: {message.message}")
            elif isinstance(message, m.ReadyForQuery):
                return rows
    finally:
        stream.writer.write(encode(m.Terminate()))
        stream.close()


class ViewCatalog:
    """Per-database cache of view dependencies; refreshed on demand after DDL."""

    def __init__(self, max_message_size: int) -> None:
        self._max = max_message_size
        self._cache: dict[str, Dependencies] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def dependencies(self, db: DatabaseSettings, dbname: str) -> Dependencies:
        key = f"{db.name}/{dbname}"
        if key in self._cache:
            return self._cache[key]
        async with self._locks.setdefault(key, asyncio.Lock()):
            if key not in self._cache:
                self._cache[key] = await self._fetch(db, dbname)
            return self._cache[key]

    def invalidate(self, db: DatabaseSettings, dbname: str) -> None:
        self._cache.pop(f"{db.name}/{dbname}", None)

    async def _fetch(self, db: DatabaseSettings, dbname: str) -> Dependencies:
        rows = await query_rows(db, dbname, CATALOG_SQL, self._max)
        return build_view_dependencies(
            (str(a), str(b), str(c), str(d)) for a, b, c, d in rows)
