"""Questions the pages ask the index: activity, sessions, people, alerts, dashboard figures.

Read-only connections (one per request, WAL lets them run beside the writer). Text and table
filters go through FTS5, walked newest first by rowid so a page of results costs the same on
ten million entries as on ten thousand; counts stop at :data:`COUNT_CAP`. Driven by ``routes``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ..journal.reader import parse_time_bound
from .index import connect

PAGE_SIZE = 50
COUNT_CAP = 10_000  # "10,000+" beyond: an exact count of a huge match set costs seconds
DECISIONS = ("allow", "deny", "cut")


@dataclass(frozen=True, slots=True)
class ActivityFilter:
    """The activity page's query string, validated. ``identities`` comes from ``group``."""

    identity: str | None = None
    group: str | None = None
    database: str | None = None
    table: str | None = None
    decision: str | None = None
    q: str | None = None
    since: str | None = None
    until: str | None = None
    session: str | None = None
    phi: bool = False
    oldest_first: bool = False
    page: int = 1
    identities: tuple[str, ...] | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, query: dict[str, str], groups: dict[str, tuple[str, ...]]
              ) -> ActivityFilter:
        """ValueError names the bad parameter."""
        def get(name: str) -> str | None:
            value = query.get(name, "").strip()
            return value or None

        decision = get("decision")
        if decision is not None and decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}")
        try:
            since = parse_time_bound(query["since"]) if get("since") else None
            until = parse_time_bound(query["until"]) if get("until") else None
        except ValueError as e:
            raise ValueError(f"since/until: {e}") from e
        try:
            page = max(1, int(get("page") or 1))
        except ValueError as e:
            raise ValueError("page must be a number") from e
        group = get("group")
        return cls(get("identity"), group, get("database"), get("table"), decision, get("q"),
                   since, until, get("session"), get("phi") == "1", get("sort") == "oldest",
                   page, groups.get(group, ()) if group else None)

    def as_access(self) -> dict[str, str]:
        """What the audit_access entry records about this view."""
        names = ("identity", "group", "database", "table", "decision", "q", "since", "until",
                 "session")
        fields = {n: str(getattr(self, n)) for n in names if getattr(self, n) is not None}
        if self.phi:
            fields["phi"] = "only"
        fields["page"] = str(self.page)
        return fields

    def query_string(self, **changes: object) -> str:
        """This filter as a query string, with ``changes`` (``page=None`` drops the page)."""
        values: dict[str, object] = {
            "identity": self.identity, "group": self.group, "database": self.database,
            "table": self.table, "decision": self.decision, "q": self.q, "since": self.since,
            "until": self.until, "session": self.session, "phi": "1" if self.phi else None,
            "sort": "oldest" if self.oldest_first else None,
            "page": self.page if self.page > 1 else None}
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v not in (None, "")})


def fts_query(text: str | None, table: str | None) -> str | None:
    """A MATCH expression: every word of ``text`` in the SQL, ``table`` in the table names.

    Each word is quoted, so FTS5 operators typed by the viewer are searched for, not obeyed.
    """
    parts = []
    for word in (text or "").split():
        parts.append('sql : "' + word.replace('"', '""') + '"')
    if table:
        parts.append('tables : "' + table.replace('"', '""') + '"')
    return " AND ".join(parts) or None


class Reader:
    """A read-only view of the index for one request."""

    def __init__(self, path: Path) -> None:
        self._db = connect(path, readonly=True)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def meta(self) -> dict[str, str]:
        return {row[0]: row[1] for row in self._db.execute("SELECT key, value FROM meta")}

    # ------------------------------------------------------------ activity

    def _where(self, where: ActivityFilter) -> tuple[str, str, list[Any]]:
        """(FROM clause, WHERE clause, parameters) for ``where``."""
        clauses, args = [], []
        match = fts_query(where.q, where.table)
        source = "statements s"
        if match is not None:
            # FTS outermost (CROSS JOIN keeps that order), walked by rowid = seq: a page is
            # the first rows it yields, never a sort of every match.
            source = "statements_text f CROSS JOIN statements s ON s.seq = f.rowid"
            clauses.append("statements_text MATCH ?")
            args.append(match)
        for column, value in (("s.identity", where.identity), ("s.database", where.database),
                              ("s.verdict", where.decision), ("s.session", where.session)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if where.identities is not None:
            clauses.append(f"s.identity IN ({','.join('?' * len(where.identities)) or 'NULL'})")
            args.extend(where.identities)
        if where.since is not None:
            clauses.append("s.time >= ?")
            args.append(where.since)
        if where.until is not None:
            clauses.append("s.time < ?")
            args.append(where.until)
        if where.phi:
            clauses.append("s.phi = 1")
        return source, " AND ".join(clauses) or "1", args

    def activity(self, where: ActivityFilter, *, limit: int = PAGE_SIZE
                 ) -> tuple[list[sqlite3.Row], int, bool]:
        """(rows of this page, count up to COUNT_CAP, whether the count is capped)."""
        source, clause, args = self._where(where)
        rows = self._db.execute(
            f"SELECT s.* FROM {source} WHERE {clause} ORDER BY {_order(source, where)} "
            f"LIMIT ? OFFSET ?", [*args, limit, (where.page - 1) * limit]).fetchall()
        count = self._db.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {clause} LIMIT ?)",
            [*args, COUNT_CAP + 1]).fetchone()[0]
        return rows, min(count, COUNT_CAP), count > COUNT_CAP

    def export(self, where: ActivityFilter) -> Iterator[sqlite3.Row]:
        source, clause, args = self._where(where)
        yield from self._db.execute(f"SELECT s.* FROM {source} WHERE {clause} "
                                    f"ORDER BY {_order(source, where)}", args)

    # ------------------------------------------------------------ sessions, people, alerts

    def session(self, session: str) -> sqlite3.Row | None:
        return self._db.execute("SELECT * FROM sessions WHERE session = ?",
                                (session,)).fetchone()

    def session_statements(self, session: str) -> list[sqlite3.Row]:
        return self._db.execute("SELECT * FROM statements WHERE session = ? ORDER BY seq",
                                (session,)).fetchall()

    def sessions(self, identity: str | None = None, limit: int = PAGE_SIZE
                 ) -> list[sqlite3.Row]:
        if identity is None:
            return self._db.execute("SELECT * FROM sessions ORDER BY start_seq DESC LIMIT ?",
                                    (limit,)).fetchall()
        return self._db.execute("SELECT * FROM sessions WHERE identity = ? "
                                "ORDER BY start_seq DESC LIMIT ?", (identity, limit)).fetchall()

    def people(self) -> list[sqlite3.Row]:
        return self._db.execute(
            "SELECT identity, sum(statements) AS statements, sum(denied) AS denied, "
            "sum(phi_rows) AS phi_rows, max(phi_rows) AS peak_rows, max(hour) AS last_hour "
            "FROM hourly "
            "GROUP BY identity ORDER BY phi_rows DESC, statements DESC").fetchall()

    def person_hours(self, identity: str, since_hour: str) -> list[sqlite3.Row]:
        return self._db.execute("SELECT * FROM hourly WHERE identity = ? AND hour >= ? "
                                "ORDER BY hour", (identity, since_hour)).fetchall()

    def alerts(self, limit: int = PAGE_SIZE) -> list[sqlite3.Row]:
        return self._db.execute(
            "SELECT a.*, s.sql AS trigger_sql, s.session AS trigger_session FROM alerts a "
            "LEFT JOIN statements s ON s.seq = a.trigger_seq ORDER BY a.seq DESC LIMIT ?",
            (limit,)).fetchall()

    # ------------------------------------------------------------ dashboard

    def hours(self, since_hour: str) -> list[sqlite3.Row]:
        return self._db.execute(
            "SELECT hour, sum(statements) AS statements, sum(denied) AS denied, "
            "sum(phi_rows) AS phi_rows FROM hourly WHERE hour >= ? GROUP BY hour "
            "ORDER BY hour", (since_hour,)).fetchall()

    def table_names(self, limit: int = 200) -> list[str]:
        """Tables statements touched, PHI tables first, then by use."""
        return [row[0] for row in self._db.execute(
            "SELECT name FROM table_use ORDER BY phi DESC, statements DESC LIMIT ?", (limit,))]

    def top_tables(self, limit: int = 8) -> list[sqlite3.Row]:
        return self._db.execute("SELECT * FROM table_use ORDER BY statements DESC LIMIT ?",
                                (limit,)).fetchall()

    def totals(self) -> sqlite3.Row:
        return self._db.execute(
            "SELECT coalesce(sum(statements), 0) AS statements, "
            "coalesce(sum(denied), 0) AS denied, coalesce(sum(phi_rows), 0) AS phi_rows, "
            "count(DISTINCT identity) AS people FROM hourly").fetchone()


def _order(source: str, where: ActivityFilter) -> str:
    column = "f.rowid" if source.startswith("statements_text") else "s.seq"
    return f"{column} {'ASC' if where.oldest_first else 'DESC'}"
