"""Reading the upstream's catalog with the service credential: views, relations, volatility,
functions.

Driven by the policy hook through each database's shared
:class:`~gateway.policy.database_catalog.DatabaseCatalog`: it runs
``policies.views.SNAPSHOT_SQL`` (view dependencies, relation names and a fingerprint in one
snapshot), ``policies.readonly.VOLATILITY_SQL`` and ``policies.functions.FUNCTIONS_SQL`` on
short-lived upstream connections, so reading a view of ``patients`` counts as reading
``patients``, a statement calling only IMMUTABLE or STABLE functions can be proved read-only,
and calling a function whose body reads ``patients`` reads ``patients``. The volatility and
the functions are shared by every session of a database: what was last committed. They are
read again when the catalog changed (``DatabaseCatalog`` asks: DDL through the gateway ended
its transaction, the fingerprint moved); until then every session waits. A session whose own
DDL is not committed yet decides on :data:`NOTHING_VOUCHED` instead
(``SessionState.volatility``). A fast-path call's function OID
is looked up in ``pg_proc`` the first time it is seen (cached per database until the catalog
changes).

Catalog reads never wait on a session: they run on their own connection with
``lock_timeout`` and ``statement_timeout`` (``proxy.sidequery``: a session that
holds a lock on a catalog table makes the read fail in seconds instead of hanging), under an
overall deadline. A failed read raises :class:`CatalogUnavailable`; the policy hook fails
closed on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass

from policies.functions import FUNCTIONS_SQL, FunctionCatalog, build_functions
from policies.functions import NOTHING_KNOWN as NO_FUNCTIONS
from policies.readonly import NOTHING_KNOWN, VOLATILITY_SQL, Volatility, build_volatility
from policies.views import (
    FINGERPRINT_SQL,
    SNAPSHOT_SQL,
    build_view_dependencies,
    relation_homes,
    relation_names,
)

from ..proxy.sidequery import SideQueryFailed, side_query
from ..settings.config import DatabaseSettings

log = logging.getLogger("phigate.catalog")

Dependencies = Mapping[str, frozenset[str]]
MAX_FUNCTIONS = 10_000  # OIDs remembered per database; sessions can call any OID they like
FUNCTION_SQL = """\
SELECT n.nspname, p.proname, p.pronargs
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE p.oid = {oid}
"""
CatalogUnavailable = SideQueryFailed  # what a failed catalog read raises


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one read of a database's catalog found (``policies.views.SNAPSHOT_SQL``)."""

    fingerprint: str
    views: Dependencies
    relations: frozenset[str]  # policies.views.relation_names
    homes: Mapping[str, frozenset[str]]  # policies.views.relation_homes


@dataclass(frozen=True, slots=True)
class Function:
    schema: str
    name: str
    arguments: int


async def query_rows(db: DatabaseSettings, dbname: str, sql: str, max_message_size: int
                     ) -> list[tuple[str | None, ...]]:
    """Run one read-only catalog query upstream (bounded: ``proxy.sidequery``)."""
    return await side_query(db, dbname, sql, max_message_size, application="phigate/catalog")


class VolatilityRef:
    """One database's :class:`Volatility` and :class:`FunctionCatalog`, shared by its sessions
    (replaced, never edited)."""

    __slots__ = ("current", "functions")

    def __init__(self) -> None:
        self.current: Volatility = NOTHING_KNOWN
        self.functions: FunctionCatalog = NO_FUNCTIONS


# What a session decides on while its own DDL may be uncommitted: nothing is proved read-only
# and every user function is opaque (its body may be the one that DDL replaced). Never edited.
NOTHING_VOUCHED = VolatilityRef()


class ViewCatalog:
    """The catalog reads, and per database the volatility and looked-up functions."""

    def __init__(self, max_message_size: int) -> None:
        self._max = max_message_size
        self._functions: dict[str, dict[int, Function | None]] = {}
        self._volatility: dict[str, VolatilityRef] = {}
        # Two reads per database: the functions (bodies, table rules, triggers; statements
        # wait for them after a change) and the volatility (only read-only proofs need it,
        # and it is the slow one: every row of pg_proc).
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._loading_functions: dict[str, asyncio.Task[None]] = {}

    def volatility(self, db: DatabaseSettings, dbname: str) -> VolatilityRef:
        """The database's volatility; read in the background when not known (yet)."""
        key = f"{db.name}/{dbname}"
        ref = self._volatility.get(key)
        if ref is None:
            ref = self._volatility[key] = VolatilityRef()
        if ref.functions is NO_FUNCTIONS and key not in self._loading_functions:
            self._start(self._loading_functions, f"catalog-functions-{key}", key,
                        self._load_functions(ref, db, dbname))
        if ref.current is NOTHING_KNOWN and key not in self._loading:
            self._start(self._loading, f"catalog-volatility-{key}", key,
                        self._load_volatility(ref, db, dbname))
        return ref

    @staticmethod
    def _start(loading: dict[str, asyncio.Task[None]], name: str, key: str,
               read: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(read, name=name)
        loading[key] = task
        task.add_done_callback(functools.partial(_loaded, loading, key))

    async def ready(self, db: DatabaseSettings, dbname: str) -> VolatilityRef:
        """:meth:`volatility`, waiting for both reads in progress (at a session's start)."""
        ref = self.volatility(db, dbname)
        key = f"{db.name}/{dbname}"
        await _settled(self._loading_functions.get(key))
        await _settled(self._loading.get(key))
        return ref

    async def functions_ready(self, db: DatabaseSettings, dbname: str) -> None:
        """Wait for the read of the functions in progress, not for the volatility's: until
        that is read, nothing is proved read-only (statements wait for their entries)."""
        self.volatility(db, dbname)
        await _settled(self._loading_functions.get(f"{db.name}/{dbname}"))

    def changed(self, db: DatabaseSettings, dbname: str) -> None:
        """The catalog changed (committed): forget the volatility and the looked-up functions,
        and read the volatility again. Sessions wait for the catalog's re-read meanwhile."""
        key = f"{db.name}/{dbname}"
        ref = self._volatility.get(key)
        if ref is not None:
            ref.current = NOTHING_KNOWN
            ref.functions = NO_FUNCTIONS
        for reads in (self._loading, self._loading_functions):
            loading = reads.pop(key, None)
            if loading is not None:
                loading.cancel()  # it may have read the catalog before the change
        self._functions.pop(key, None)
        self.volatility(db, dbname)

    async def _load_volatility(self, ref: VolatilityRef, db: DatabaseSettings,
                               dbname: str) -> None:
        try:
            rows = await query_rows(db, dbname, VOLATILITY_SQL, self._max)
            ref.current = build_volatility((str(a), str(b), str(c), str(d))
                                           for a, b, c, d in rows)
        except Exception as e:  # conservative: nothing is proved read-only
            log.error("could not read function volatility: %s", e)

    async def _load_functions(self, ref: VolatilityRef, db: DatabaseSettings,
                              dbname: str) -> None:
        try:
            found = await query_rows(db, dbname, FUNCTIONS_SQL, self._max)
            ref.functions = build_functions(
                (a or "", b or "", c or "", d or "", e or "", f or "")
                for a, b, c, d, e, f in found)
        except Exception as e:  # conservative: every user function stays opaque
            log.error("could not read user functions: %s", e)

    async def snapshot(self, db: DatabaseSettings, dbname: str) -> Snapshot:
        """View dependencies, relation names and the fingerprint, in one snapshot."""
        rows = await query_rows(db, dbname, SNAPSHOT_SQL, self._max)
        fingerprint = next((str(r[1]) for r in rows if r[0] == "fingerprint"), "")
        views = build_view_dependencies((str(a), str(b), str(c), str(d))
                                        for kind, a, b, c, d in rows if kind == "depends")
        listed = [(str(a), str(b)) for kind, a, b, _, _ in rows if kind == "relation"]
        return Snapshot(fingerprint, views, relation_names(listed), relation_homes(listed))

    async def fingerprint(self, db: DatabaseSettings, dbname: str) -> str:
        """``policies.views.FINGERPRINT_SQL``: changes with every view, relation or function."""
        rows = await query_rows(db, dbname, FINGERPRINT_SQL, self._max)
        return str(rows[0][0]) if rows else ""

    async def function(self, db: DatabaseSettings, dbname: str, oid: int) -> Function | None:
        """The function with this OID, or None if there is none (as far as committed DDL goes)."""
        known = self._functions.setdefault(f"{db.name}/{dbname}", {})
        if oid in known:
            return known[oid]
        rows = await query_rows(db, dbname, FUNCTION_SQL.format(oid=int(oid)), self._max)
        found = Function(str(rows[0][0]), str(rows[0][1]), int(str(rows[0][2]))) if rows else None
        if len(known) >= MAX_FUNCTIONS:
            known.clear()
        known[oid] = found
        return found


def _loaded(loading: dict[str, asyncio.Task[None]], key: str, task: asyncio.Task[None]) -> None:
    if loading.get(key) is task:  # not a newer read started after a change
        del loading[key]


async def _settled(task: asyncio.Task[None] | None) -> None:
    """Wait for a shared read; a waiter never cancels it, and a read cancelled by a change
    (a newer one replaces it) ends the wait."""
    if task is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)
