"""One upstream database's catalog as every session of it sees it, kept current.

The policy hook keeps one :class:`DatabaseCatalog` per configured database and hands it to
each of its sessions: ``views`` (view dependencies), ``relations`` (every relation's names)
and ``volatility`` (the shared :class:`~gateway.policy.catalog.VolatilityRef`). Nothing is
copied per session, so what one read finds is what every session decides on next. The
catalog is read again — once per database however many ask, in a read that starts after the
ask (:meth:`DatabaseCatalog.refresh`) — when

* DDL, ``DO`` or ``CALL`` of a session through the gateway has ended its transaction
  (ReadyForQuery 'I': committed, or rolled back);
* a statement names a relation the catalog has never listed (made directly on the database):
  :meth:`DatabaseCatalog.look_for`; a name still missing is remembered until the next read,
  so a typo costs one read, not one per statement;
* its fingerprint changed (``policies.fingerprint.FINGERPRINT_SQL``, polled every
  ``limits.catalog_poll_interval``: DDL made directly on the database; ``catalog_poll.py``).

A read is the snapshot (views, relation names, the fingerprint); the functions and the
volatility are read again only if it moved their part of the fingerprint
(``function_reads.py``). While a read runs, ``refreshing`` is set and every session's
statements wait for it (the snapshot, and the functions when they are read again). Each
read replaces ``views`` with a new object, so decisions cached on the old one (compared by
identity) are not reused. A read that fails leaves ``views`` :class:`~policies.views.Unsettled`
(every relation read counts as every PHI table) and is tried again a second later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from policies.fingerprint import Fingerprint
from policies.statement import TableRef
from policies.views import Unsettled

from ..settings.config import DatabaseSettings
from .catalog import CatalogUnavailable, Dependencies, Snapshot, ViewCatalog, VolatilityRef
from .catalog_poll import poll
from .widths import RowWidthCatalog

log = logging.getLogger("phigate.catalog")

RETRY_S = 1.0  # a failed read is tried again this much later while sessions are open
MAX_ABSENT = 4096  # names remembered as missing until the next read; sessions can invent names
UNREADABLE = "the upstream catalog could not be read again after DDL"


@dataclass(frozen=True, slots=True)
class CatalogSource:
    """Where one database's catalog is read from, and what else forgets it when it changes."""

    reader: ViewCatalog
    widths: RowWidthCatalog
    db: DatabaseSettings
    dbname: str
    # told (db, dbname) whenever the catalog may have changed, before it is read again: the
    # masking wing's catalog (gateway/masking/catalog.py) forgets what it read
    listeners: tuple[Callable[[DatabaseSettings, str], None], ...] = field(default=())

    @property
    def label(self) -> str:
        return f"{self.db.name}/{self.dbname}"

    async def snapshot(self) -> Snapshot:
        return await self.reader.snapshot(self.db, self.dbname)

    async def fingerprint(self) -> str:
        return await self.reader.fingerprint(self.db, self.dbname)

    def follow(self, fingerprint: str, changed: bool) -> None:
        """A snapshot found ``fingerprint``; ``changed``: the catalog changed since the last
        (DDL ended, the fingerprint moved): row widths are read again by the next session, and
        the listeners are told."""
        self.reader.follow(self.db, self.dbname, Fingerprint.parse(fingerprint))
        if changed:
            self.widths.invalidate(self.db, self.dbname)
            self.tell()

    def tell(self) -> None:
        """Tell the listeners the catalog may have changed (a listener's error is logged)."""
        for listener in self.listeners:
            try:
                listener(self.db, self.dbname)
            except Exception:
                log.exception("a catalog change listener failed")

    async def functions_read(self) -> None:
        """The user functions (table rules and triggers too), once read again if the snapshot
        moved them; the volatility may still be reading (until then nothing is proved
        read-only)."""
        await self.reader.functions_ready(self.db, self.dbname)


class DatabaseCatalog:
    """The view dependencies, relation names and volatility every session of a database uses.

    Without a ``source`` (no upstream to read: a session whose database is not configured, or
    a unit test) it is whatever is set on it, and every relation name counts as seen.
    """

    def __init__(self, source: CatalogSource | None = None,
                 volatility: VolatilityRef | None = None, *, poll_s: float = 0.0) -> None:
        self.views: Dependencies = {}
        self.relations: frozenset[str] | None = None  # None: not read (yet)
        # bare name -> its schemas (policies.views.relation_homes); replaced with ``views``
        self.homes: Mapping[str, frozenset[str]] = {}
        self.volatility = volatility if volatility is not None else VolatilityRef()
        self.fingerprint = ""
        self.refreshing: asyncio.Task[None] | None = None  # every session's statements wait
        self.failure: CatalogUnavailable | None = None  # the last read failed
        self.sessions = 0
        self.poll_s = poll_s
        self.source = source
        self._absent: set[str] = set()
        self._wanted = 0  # reads asked for; the read loop runs until it has done them all
        self._done = 0
        self._changed = False  # a read asked for because the catalog changed (not a lookup)
        self._retry: asyncio.TimerHandle | None = None
        self._poll: asyncio.Task[None] | None = None

    # ------------------------------------------------------------- sessions

    async def load(self) -> None:
        """At a session's start: a good read in force, or one now (raises CatalogUnavailable)."""
        if self.source is None:
            return
        if self.relations is None or self.failure is not None:
            self.refresh(changed=False)  # a failed read after a change is already unsettled
        await self.settled()
        if self.failure is not None:
            raise self.failure

    def joined(self) -> None:
        self.sessions += 1
        self._start_poll()

    def poll_every(self, seconds: float) -> None:
        """A reloaded ``limits.catalog_poll_interval``: from the next poll on (0: stop)."""
        self.poll_s = seconds
        if self.sessions:
            self._start_poll()

    def _start_poll(self) -> None:
        if (self._poll is None or self._poll.done()) and self.poll_s > 0 and self.source:
            self._poll = asyncio.create_task(poll(self), name=f"catalog-poll-{self.source.label}")

    def left(self) -> None:
        self.sessions = max(0, self.sessions - 1)
        if self.sessions == 0:
            if self._poll is not None:
                self._poll.cancel()
                self._poll = None
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None

    # ------------------------------------------------------------- reading

    def refresh(self, *, changed: bool = True) -> asyncio.Task[None] | None:
        """Read the catalog again, in a read that starts after this call; until it is done,
        ``refreshing`` holds every session's statements. None without a source.

        ``changed``: the catalog changed (DDL ended, the fingerprint moved), so if the read
        fails, what was read before no longer holds (fail closed). A lookup of unseen names
        (``changed=False``) that fails leaves it in force."""
        if self.source is None:
            return None
        if changed:
            self.source.tell()  # at once, even if the read fails
        self._wanted += 1
        self._changed = self._changed or changed
        if self.refreshing is None:
            self.refreshing = asyncio.create_task(self._read(),
                                                  name=f"catalog-{self.source.label}")
        return self.refreshing

    async def settled(self) -> None:
        """Wait for the read in progress, if any (shared: never cancelled by a waiter)."""
        task = self.refreshing
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    async def _read(self) -> None:
        assert self.source is not None
        try:
            while self._done < self._wanted:
                target = self._wanted
                changed, self._changed = self._changed, False
                try:
                    snapshot = await self.source.snapshot()
                except Exception as e:  # whatever failed, what the catalog says is not known
                    failure = e if isinstance(e, CatalogUnavailable) else CatalogUnavailable(
                        "phigate: the upstream catalog could not be read",
                        detail=type(e).__name__)
                    self._unreadable(failure, changed or self.relations is None)
                    self._done = self._wanted  # the retry, or the next ask, reads again
                    return
                self._install(snapshot, changed)
                await self.source.functions_read()  # a table rule added is read, too
                self._done = target
        finally:
            self.refreshing = None

    def _install(self, snapshot: Snapshot, changed: bool) -> None:
        assert self.source is not None
        # The functions and the volatility are read again if the fingerprint moved their part
        # (policies.fingerprint counts every catalog row they read).
        self.source.follow(snapshot.fingerprint, self.relations is not None and (
            changed or snapshot.fingerprint != self.fingerprint))
        self.views, self.relations = snapshot.views, snapshot.relations
        self.homes = snapshot.homes
        self.fingerprint = snapshot.fingerprint
        self.failure = None
        self._absent.clear()

    def _unreadable(self, error: CatalogUnavailable, changed: bool) -> None:
        """The read failed: new sessions read again first (and are refused if that fails).
        After a change, fail closed until a read succeeds: every relation read counts as
        every PHI table."""
        log.error("could not read the catalog of %s: %s",
                  self.source.label if self.source else "?", error.message)
        self.failure = error
        if not changed:
            return
        self._changed = True  # the retry is still about a change
        if not isinstance(self.views, Unsettled):
            self.views = Unsettled(self.views, UNREADABLE)
        self._absent.clear()
        if self.sessions and self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(RETRY_S, self._try_again)

    def _try_again(self) -> None:
        self._retry = None
        if self.sessions and self.failure is not None:
            self.refresh()

    # ------------------------------------------------------------- names

    def unlisted(self, tables: Iterable[TableRef]) -> list[str]:
        """The names among ``tables`` that the catalog does not list."""
        relations = self.relations
        if relations is None:
            return []
        out = []
        for ref in tables:
            name = ref.name.lower()
            if name == "*":
                continue
            key = f"{ref.schema.lower()}.{name}" if ref.schema else name
            if key not in relations:
                out.append(key)
        return out

    def unseen(self, names: Iterable[str]) -> list[str]:
        """Those of the unlisted ``names`` not yet looked up since the last read."""
        return [name for name in names if name not in self._absent]

    async def look_for(self, names: Iterable[str]) -> None:
        """Read the catalog again for names it did not list; those still missing are
        remembered until the next read. Raises CatalogUnavailable when it cannot be read."""
        self.refresh(changed=False)
        await self.settled()
        if self.failure is not None:
            raise self.failure
        relations = self.relations or frozenset()
        missing = [name for name in names if name not in relations]
        if len(self._absent) + len(missing) > MAX_ABSENT:
            self._absent.clear()
        self._absent.update(missing)
