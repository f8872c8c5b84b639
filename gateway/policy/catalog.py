"""Reading the upstream's catalog with the service credential: views, relations, volatility,
functions.

Driven by the policy hook through each database's shared
:class:`~gateway.policy.database_catalog.DatabaseCatalog`: it runs
``policies.views.SNAPSHOT_SQL`` (view dependencies, relation names and the fingerprint,
``policies.fingerprint``, in one snapshot), and through ``function_reads.py``
``policies.readonly.BUILTINS_SQL``, ``VOLATILITY_SQL`` and ``policies.functions.FUNCTIONS_SQL``
on short-lived upstream connections, so reading a view of ``patients`` counts as reading
``patients``, a statement calling only IMMUTABLE or STABLE functions can be proved read-only,
and calling a function whose body reads ``patients`` reads ``patients``. The volatility and
the functions are shared by every session of a database: what was last committed. Each
snapshot's fingerprint is followed (:meth:`ViewCatalog.follow`): they are read again when it
moved the part they were read from; after DDL every session waits for the functions. A
session whose own DDL is not committed yet decides on :data:`NOTHING_VOUCHED` instead
(``SessionState.volatility``). A fast-path call's function OID is looked up in ``pg_proc``
the first time it is seen (cached per database until the functions are read again).

Catalog reads never wait on a session: they run on their own connection with
``lock_timeout`` and ``statement_timeout`` (``proxy.sidequery``: a session that
holds a lock on a catalog table makes the read fail in seconds instead of hanging), under an
overall deadline. A failed read raises :class:`CatalogUnavailable`; the policy hook fails
closed on it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from policies.fingerprint import FINGERPRINT_SQL, Fingerprint
from policies.functions import NOTHING_KNOWN as NO_FUNCTIONS
from policies.functions import FunctionCatalog
from policies.readonly import NOTHING_KNOWN, Volatility
from policies.views import SNAPSHOT_SQL, build_view_dependencies, relation_homes, relation_names

from ..proxy.sidequery import SideQueryFailed, side_query
from ..settings.config import DatabaseSettings
from .function_reads import FUNCTIONS, VOLATILITY, FunctionReads

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
    """Run one read-only catalog query upstream (bounded, on a kept connection:
    ``proxy.sidequery``)."""
    return await side_query(db, dbname, sql, max_message_size, application="phigate/catalog",
                            reuse=True)


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
    """The catalog reads, and per database its function reads (``function_reads.py``)."""

    def __init__(self, max_message_size: int) -> None:
        self._max = max_message_size
        self._reads: dict[str, FunctionReads] = {}

    def _database(self, db: DatabaseSettings, dbname: str) -> FunctionReads:
        key = f"{db.name}/{dbname}"
        reads = self._reads.get(key)
        if reads is None:
            reads = self._reads[key] = FunctionReads(
                VolatilityRef(), functools.partial(self._query, db, dbname), key)
        return reads

    async def _query(self, db: DatabaseSettings, dbname: str, sql: str
                     ) -> list[tuple[str | None, ...]]:
        return await query_rows(db, dbname, sql, self._max)

    def volatility(self, db: DatabaseSettings, dbname: str) -> VolatilityRef:
        """The database's volatility; read in the background when not known (yet)."""
        reads = self._database(db, dbname)
        reads.start()
        return reads.ref

    async def ready(self, db: DatabaseSettings, dbname: str) -> VolatilityRef:
        """:meth:`volatility`, waiting for both reads in progress (at a session's start)."""
        ref = self.volatility(db, dbname)
        await self._database(db, dbname).wait(FUNCTIONS, VOLATILITY)
        return ref

    async def functions_ready(self, db: DatabaseSettings, dbname: str) -> None:
        """Wait for the read of the functions in progress, not for the volatility's: until
        that is read, nothing is proved read-only (statements wait for their entries)."""
        self.volatility(db, dbname)
        await self._database(db, dbname).wait(FUNCTIONS)

    def follow(self, db: DatabaseSettings, dbname: str, fingerprint: Fingerprint) -> None:
        """A snapshot of the committed catalog found ``fingerprint``: the functions and the
        volatility are read again if it moved what they were read from."""
        self._database(db, dbname).follow(fingerprint)

    async def snapshot(self, db: DatabaseSettings, dbname: str) -> Snapshot:
        """View dependencies, relation names and the fingerprint, in one snapshot."""
        rows = await query_rows(db, dbname, SNAPSHOT_SQL, self._max)
        fingerprint = next((str(r[1]) for r in rows if r[0] == "fingerprint"), "")
        views = build_view_dependencies((str(a), str(b), str(c), str(d))
                                        for kind, a, b, c, d in rows if kind == "depends")
        listed = [(str(a), str(b)) for kind, a, b, _, _ in rows if kind == "relation"]
        return Snapshot(fingerprint, views, relation_names(listed), relation_homes(listed))

    async def fingerprint(self, db: DatabaseSettings, dbname: str) -> str:
        """``policies.fingerprint.FINGERPRINT_SQL``: moves with everything the reads use."""
        rows = await query_rows(db, dbname, FINGERPRINT_SQL, self._max)
        return str(rows[0][0]) if rows else ""

    async def function(self, db: DatabaseSettings, dbname: str, oid: int) -> Function | None:
        """The function with this OID, or None if there is none (as far as committed DDL goes)."""
        known = self._database(db, dbname).looked_up
        if oid in known:
            return known[oid]
        rows = await query_rows(db, dbname, FUNCTION_SQL.format(oid=int(oid)), self._max)
        found = Function(str(rows[0][0]), str(rows[0][1]), int(str(rows[0][2]))) if rows else None
        if len(known) >= MAX_FUNCTIONS:
            known.clear()
        known[oid] = found
        return found
