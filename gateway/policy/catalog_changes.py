"""The policy hook's catalogs: one shared per database, and each session's changes to it.

:class:`Catalogs` owns the catalog reads (``catalog.py``, ``widths.py``) and one
:class:`~gateway.policy.database_catalog.DatabaseCatalog` per database. A session starts on
its database's catalog (read first if it never was, or its last read failed: a session whose
view dependencies cannot be read is refused). A statement that may change the catalog (DDL,
``DO``, ``CALL``) makes its session unsettled from the moment it is forwarded (it decides on
no volatility or function it could have changed, ``SessionState.volatility``); once it
completed, the relay is asked to say when the session's transaction is over
(``TransactionWatch``). Then the session settles and the database's catalog — views,
volatility and functions — is read again at once, before anyone's next statement is decided.
Other sessions go on deciding on the committed catalog meanwhile: they cannot see that
session's uncommitted DDL.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from ..errors import PolicyDenied
from ..proxy.hooks import SessionInfo
from ..settings.config import DatabaseSettings, Settings
from .catalog import CatalogUnavailable, Function, ViewCatalog
from .database_catalog import CatalogSource, DatabaseCatalog
from .session_state import SessionState
from .widths import RowWidthCatalog

log = logging.getLogger("phigate.policy")


class Catalogs:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._reader = ViewCatalog(settings.limits.max_message_size)
        self._widths = RowWidthCatalog(settings.limits.max_message_size)
        self._databases: dict[str, DatabaseCatalog] = {}
        self._listeners: list[Callable[[DatabaseSettings, str], None]] = []

    def subscribe(self, listener: Callable[[DatabaseSettings, str], None]) -> None:
        """Call ``listener(db, dbname)`` whenever a database's catalog may have changed: DDL
        through the gateway ended its transaction, the polled fingerprint moved, a lookup
        found it moved. Databases opened from now on (subscribe at assembly)."""
        self._listeners.append(listener)

    def configure(self, settings: Settings) -> None:
        """A reloaded configuration: the poll interval applies from the next poll on."""
        self._settings = settings
        for catalog in self._databases.values():
            catalog.poll_every(settings.limits.catalog_poll_s)

    def _database(self, db: DatabaseSettings, dbname: str) -> DatabaseCatalog:
        key = f"{db.name}/{dbname}"
        catalog = self._databases.get(key)
        if catalog is None:
            catalog = self._databases[key] = DatabaseCatalog(
                CatalogSource(self._reader, self._widths, db, dbname, tuple(self._listeners)),
                self._reader.volatility(db, dbname),
                poll_s=self._settings.limits.catalog_poll_s)
        return catalog

    async def open(self, session: SessionInfo) -> SessionState:
        """The session's state on its database's catalog. Raises CatalogUnavailable."""
        db = self._settings.database_for(session.database)
        if db is None:  # nothing to read: no views, nothing proved read-only
            return SessionState(session, session.reason, DatabaseCatalog())
        dbname = db.dbname or session.database
        catalog = self._database(db, dbname)
        try:
            await catalog.load()
        except CatalogUnavailable as e:  # fail closed: a view of PHI would read as no PHI
            log.error("could not read view dependencies; session refused: %s", e.message,
                      extra={"session": session.session_id})
            raise CatalogUnavailable(
                "phigate: the session cannot start: the upstream catalog (view "
                f"dependencies) could not be read: {e.message.removeprefix('phigate: ')}",
                hint="try again in a moment") from e
        await self._reader.ready(db, dbname)
        state = SessionState(session, session.reason, catalog)
        try:
            state.widths = await self._widths.widths(db, dbname)
        except Exception as e:  # every table then counts the default row width
            log.error("could not read row widths: %s", e)
        catalog.joined()
        return state

    def close(self, state: SessionState) -> None:
        state.info.transaction.on_idle = None
        changed = state.uncommitted or state.changes_in_flight
        state.catalog.left()
        if changed:
            state.catalog.refresh()  # its last DDL may have committed unseen

    # ------------------------------------------------------------- a session's changes

    @staticmethod
    def forwarded(state: SessionState) -> None:
        state.change_forwarded()

    def completed(self, state: SessionState, ran: bool) -> None:
        state.change_completed(ran)
        if not ran:
            return
        state.info.transaction.on_idle = functools.partial(self._transaction_ended, state)

    def _transaction_ended(self, state: SessionState) -> None:
        state.transaction_ended()
        state.catalog.refresh()  # now: another session may read the new view next

    # ------------------------------------------------------------- unseen relations

    @staticmethod
    async def look_for(state: SessionState, names: list[str]) -> None:
        """Read the catalog again for relation names it never listed; fail closed."""
        try:
            await state.catalog.look_for(names)
        except CatalogUnavailable as e:
            log.error("could not read the catalog for unseen relations: %s", e.message,
                      extra={"session": state.info.session_id})
            raise PolicyDenied(
                f"{e.message}; the statement names a relation the gateway has not seen "
                f"({', '.join(names)}) and cannot look it up: denied",
                hint="try again; the gateway could not check what the relation reads") from e

    # ------------------------------------------------------------- fast-path functions

    async def function(self, state: SessionState, oid: int) -> Function | None:
        source = state.catalog.source
        if source is None:
            return None
        try:
            return await self._reader.function(source.db, source.dbname, oid)
        except CatalogUnavailable as e:
            log.error("could not look up a fast-path function: %s", e.message,
                      extra={"session": state.info.session_id, "oid": oid})
            raise PolicyDenied(f"{e.message}; fast-path call of function {oid} denied",
                               hint="try again; the gateway could not check the call") from e
