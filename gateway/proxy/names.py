"""One session's prepared statements and portals, in one namespace, as the server keeps them.

PostgreSQL has one table of prepared statements per session, filled by the protocol's Parse and
by SQL ``PREPARE`` (and emptied by Close, ``DEALLOCATE`` and ``DISCARD ALL``), and one table of
portals, filled by Bind and by SQL ``DECLARE`` (a portal made by Bind can be read with ``FETCH``,
a cursor made by ``DECLARE`` with Execute). :class:`SessionNames` mirrors both: the relay
(``gateway/proxy/relay.py``) records the protocol messages, and a hook that understands SQL
(the policy hook) records the SQL-level ones and leaves its decision on each entry
(``decided``), so every later use of a name, by either route, is decided on what it really runs.
Also keeps the Describe answers the relay hands to hooks. Lives in ``SessionInfo.names``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from protocols.postgres import peek
from protocols.postgres.encodings import UTF8, ClientEncoding

if TYPE_CHECKING:
    from .hooks import RowLimit

_ROW_DESCRIPTION = ord("T")


@dataclass(slots=True)
class Described:
    """The Describe answer of one Parse (or one portal): a new object per Parse, so an
    Execute is always matched with the description of what its portal really runs."""

    frame: bytes | None = None


@dataclass(slots=True)
class Prepared:
    """A prepared statement: its text and what a hook made of it (opaque to the core)."""

    sql: str
    standard_strings: bool = True
    decided: object | None = None
    answer: Described = field(default_factory=Described)  # replaced at each Parse


@dataclass(slots=True)
class Portal:
    sql: str
    statement_name: str
    bind_frame: bytes
    rows_sent: int = 0
    bytes_sent: int = 0  # DataRow payload bytes, for max_bytes across Executes
    row_limit: RowLimit | None = None
    standard_strings: bool = True
    decided: object | None = None
    prepared: Described | None = None  # the Describe answer of its statement
    described: Described = field(default_factory=Described)  # of the portal itself


class SessionNames:
    """Prepared statements, portals and Describe answers of one session, by name."""

    __slots__ = ("statements", "portals", "described", "descriptions", "encoding", "version")

    def __init__(self) -> None:
        self.statements: dict[str, Prepared] = {}
        self.portals: dict[str, Portal] = {}
        # Describe answers (RowDescription or NoData), in order, so that a prepared
        # statement's column names reach hooks even when its Executes come much later.
        self.described: deque[tuple[str | None, Described | None]] = deque()
        self.descriptions: dict[str, bytes | None] = {}
        self.encoding: ClientEncoding = UTF8  # the relay keeps it at the session's
        self.version = 0  # bumped by every SQL-level change, for hooks that cache decisions

    # ---------------------------------------------------------------- protocol messages

    def parse(self, name: str, sql: str, standard_strings: bool = True) -> None:
        self.statements[name] = Prepared(sql, standard_strings)
        self.descriptions.pop(name, None)

    def forget_statement(self, name: str) -> None:
        self.statements.pop(name, None)

    def bind(self, frame: bytes) -> None:
        portal, name = peek.bind_names(frame, self.encoding)
        statement = self.statements.get(name)
        if statement is None:  # the upstream will report the missing statement
            self.portals[portal] = Portal("", name, frame)
            return
        self.portals[portal] = Portal(statement.sql, name, frame,
                                      standard_strings=statement.standard_strings,
                                      decided=statement.decided, prepared=statement.answer)

    def close(self, frame: bytes) -> None:
        kind, name = peek.close_target(frame, self.encoding)
        if kind == "S":
            self.statements.pop(name, None)
            self.descriptions.pop(name, None)
        else:
            self.portals.pop(name, None)

    def describe(self, frame: bytes) -> None:
        kind, name = peek.close_target(frame, self.encoding)  # Describe has Close's layout
        if kind == "S":
            statement = self.statements.get(name)
            self.described.append((name, statement.answer if statement else None))
        else:
            portal = self.portals.get(name)
            self.described.append((None, portal.described if portal else None))

    def description(self, type_byte: int, frame: bytes) -> None:
        """The answer to the oldest outstanding Describe; kept for a described statement."""
        name, answer = self.described.popleft()
        kept = frame if type_byte == _ROW_DESCRIPTION else None
        if name is not None:
            self.descriptions[name] = kept
        if answer is not None:
            answer.frame = kept

    # ---------------------------------------------------------------- SQL statements

    def prepared(self, name: str, sql: str, decided: object) -> None:
        """``PREPARE name AS sql`` succeeded."""
        self.statements[name] = Prepared(sql, decided=decided)
        self.descriptions.pop(name, None)
        self.version += 1

    def declared(self, name: str, sql: str, decided: object) -> None:
        """``DECLARE name CURSOR FOR sql`` succeeded."""
        self.portals[name] = Portal(sql, "", b"", decided=decided)
        self.version += 1

    def deallocated(self, name: str | None) -> None:
        """``DEALLOCATE name`` (``None``: ``DEALLOCATE ALL``) succeeded."""
        if name is None:
            self.statements.clear()
            self.descriptions.clear()
        else:
            self.statements.pop(name, None)
            self.descriptions.pop(name, None)
        self.version += 1

    def closed(self, name: str | None) -> None:
        """``CLOSE name`` (``None``: ``CLOSE ALL``) succeeded."""
        if name is None:
            self.portals.clear()
        else:
            self.portals.pop(name, None)
        self.version += 1

    def decided_statements(self) -> dict[str, object]:
        return {n: p.decided for n, p in self.statements.items() if p.decided is not None}

    def decided_portals(self) -> dict[str, object]:
        return {n: p.decided for n, p in self.portals.items() if p.decided is not None}
