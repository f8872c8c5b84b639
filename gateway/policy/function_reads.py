"""One database's function reads: the built-ins once, the user functions and the volatility
when the part of the catalog's fingerprint they depend on moved.

Driven by :class:`~gateway.policy.catalog.ViewCatalog`, which keeps one per database and tells
it every snapshot's fingerprint (:meth:`FunctionReads.follow`, ``policies.fingerprint``). Each
read returns, in the same statement, the fingerprint part of the state it read, so a snapshot
showing the same part proves what was read current: DDL that moved only the relations
(``CREATE TABLE``) reads neither again, and the built-ins (``policies.readonly.BUILTINS_SQL``,
most of ``pg_proc``) are read again only when a superuser changed them. When a part moved, what
was read before is forgotten at once (fail closed: the functions are ``NOTHING_KNOWN``, every
user function opaque, and statements wait for their re-read after DDL; the volatility is
``NOTHING_KNOWN``, nothing proved read-only) and read again. A read in progress meanwhile may
have begun before the change: when it ends, it is read again unless it found the state
followed last. A failed read is logged and leaves the conservative value; the next
:meth:`follow` tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from policies.fingerprint import SEPARATOR, Fingerprint
from policies.functions import FUNCTIONS_SQL, build_functions, builtin_rows
from policies.functions import NOTHING_KNOWN as NO_FUNCTIONS
from policies.readonly import BUILTINS_SQL, NOTHING_KNOWN, VOLATILITY_SQL, build_volatility

if TYPE_CHECKING:
    from .catalog import Function, VolatilityRef

log = logging.getLogger("phigate.catalog")

Query = Callable[[str], Awaitable[list[tuple[str | None, ...]]]]  # SQL -> rows, upstream
VolatilityRow = tuple[str, str, str, str]
FUNCTIONS, VOLATILITY = "functions", "volatility"


def depends_on(part: str, fingerprint: Fingerprint) -> str:
    """The text of ``fingerprint`` a read of ``part`` is current for."""
    return fingerprint.user_functions if part == FUNCTIONS else fingerprint.text


class FunctionReads:
    """The reads behind one database's :class:`VolatilityRef` (replaced, never edited)."""

    def __init__(self, ref: VolatilityRef, query: Query, label: str) -> None:
        self.ref = ref
        self.label = label
        self.looked_up: dict[int, Function | None] = {}  # fast-path OIDs, with the functions
        self._query = query
        self._builtins: tuple[str, list[VolatilityRow]] | None = None  # (part, rows)
        self._reading_builtins: asyncio.Task[tuple[str, list[VolatilityRow]]] | None = None
        self._found: dict[str, str | None] = {FUNCTIONS: None, VOLATILITY: None}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._follows = 0  # how many fingerprints were followed
        self._wanted: Fingerprint | None = None

    def start(self) -> None:
        """Read what was never read (or failed), unless it is being read."""
        for part in (FUNCTIONS, VOLATILITY):
            if self._found[part] is None and part not in self._tasks:
                self._start(part)

    def follow(self, fingerprint: Fingerprint) -> None:
        """The committed catalog has ``fingerprint``: forget and read again what it moved."""
        self._follows += 1
        self._wanted = fingerprint
        if self._builtins is not None and self._builtins[0] != fingerprint.builtins:
            self._builtins = None
        for part in (FUNCTIONS, VOLATILITY):
            if self._found[part] != depends_on(part, fingerprint):
                self._forget(part)
                if part not in self._tasks:
                    self._start(part)

    async def wait(self, *parts: str) -> None:
        """Until no read of ``parts`` is in progress (one read again after a change too)."""
        for part in parts:
            while (task := self._tasks.get(part)) is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(task)

    def _forget(self, part: str) -> None:
        self._found[part] = None
        if part == FUNCTIONS:
            self.ref.functions = NO_FUNCTIONS
            self.looked_up.clear()
        else:
            self.ref.current = NOTHING_KNOWN

    def _start(self, part: str) -> None:
        task = asyncio.create_task(self._run(part), name=f"catalog-{part}-{self.label}")
        self._tasks[part] = task

    async def _run(self, part: str) -> None:
        try:
            while True:
                follows = self._follows
                try:
                    self._found[part] = await (self._functions() if part == FUNCTIONS
                                               else self._volatility())
                except Exception as e:  # conservative: what it replaces stays forgotten
                    log.error("could not read the %s of %s: %s", part, self.label, e)
                    return
                wanted = self._wanted
                if (follows == self._follows or wanted is None
                        or self._found[part] == depends_on(part, wanted)):
                    return
                self._forget(part)  # it may have begun before the change followed since
        finally:
            del self._tasks[part]

    async def _functions(self) -> str:
        part, builtins = await self._builtin_rows()
        rows = [tuple(v or "" for v in row) for row in await self._query(FUNCTIONS_SQL)]
        found = next((r[5] for r in rows if r[0] == "fingerprint"), "")
        self.ref.functions = build_functions(
            [(a, b, c, d, e, f) for a, b, c, d, e, f in rows] + builtin_rows(builtins))
        return f"{found}{SEPARATOR}{part}"

    async def _volatility(self) -> str:
        part, builtins = await self._builtin_rows()
        rows = [(str(a), str(b), str(c), str(d)) for a, b, c, d in
                await self._query(VOLATILITY_SQL)]
        found = next((r[1] for r in rows if r[0] == "fingerprint"), "")
        self.ref.current = build_volatility(rows + builtins)
        return f"{found}{SEPARATOR}{part}"

    async def _builtin_rows(self) -> tuple[str, list[VolatilityRow]]:
        """The built-ins and their part of the fingerprint: read once, shared by both reads."""
        if self._builtins is not None:
            return self._builtins
        if self._reading_builtins is None:
            self._reading_builtins = asyncio.create_task(
                self._read_builtins(), name=f"catalog-builtins-{self.label}")
        try:
            return await asyncio.shield(self._reading_builtins)
        finally:
            if self._reading_builtins is not None and self._reading_builtins.done():
                self._reading_builtins = None

    async def _read_builtins(self) -> tuple[str, list[VolatilityRow]]:
        rows = [(str(a), str(b), str(c), str(d)) for a, b, c, d in
                await self._query(BUILTINS_SQL)]
        found = next((r[1] for r in rows if r[0] == "fingerprint"), "")
        self._builtins = (found, [r for r in rows if r[0] != "fingerprint"])
        return self._builtins
