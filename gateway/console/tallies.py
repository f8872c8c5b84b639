"""Counters the index keeps per session, per (hour, identity) and per table, summed in
memory while a batch of journal lines is read and written with one ``executemany`` each
when the batch commits: three small UPDATEs per statement would otherwise cost more than
the statement's own rows. Also remembers the statements still waiting for their outcome, so
an outcome finds its statement without a query. Driven by ``index``.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict

MAX_OPEN = 100_000  # statements awaiting their outcome kept in memory; beyond, a query

Open = tuple[object, object, object, bool]  # seq, time, identity, whether it read PHI


class Tallies:
    def __init__(self) -> None:
        self.sessions: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self.hourly: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        self.tables: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.open: dict[tuple[str | None, object], Open] = {}

    def statement(self, session: str | None, n: object, opened: Open, denied: bool,
                  tables: list[str], phi: list[str]) -> None:
        if session is not None:
            counts = self.sessions[session]
            counts[0] += 1
            counts[1] += denied
        self._hour(opened[1], opened[2], 1, int(denied), 0)
        for name in tables:
            use = self.tables[name]
            use[0] += 1
            use[1] = max(use[1], int(name in phi))
        if len(self.open) >= MAX_OPEN:
            self.open.clear()  # a flood of statements that never finish: look them up instead
        self.open[(session, n)] = opened

    def outcome(self, session: str | None, opened: Open, rows: int) -> None:
        phi_rows = rows if opened[3] else 0
        if session is not None:
            counts = self.sessions[session]
            counts[2] += rows
            counts[3] += phi_rows
        if phi_rows:
            self._hour(opened[1], opened[2], 0, 0, phi_rows)

    def _hour(self, time: object, identity: object, statements: int, denied: int,
              phi_rows: int) -> None:
        hour = time[:13] if isinstance(time, str) else "?"
        counts = self.hourly[(hour, identity if isinstance(identity, str) else "?")]
        counts[0] += statements
        counts[1] += denied
        counts[2] += phi_rows

    def flush(self, db: sqlite3.Connection) -> None:
        db.executemany("UPDATE sessions SET statements = statements + ?, denied = denied + ?, "
                       "rows = rows + ?, phi_rows = phi_rows + ? WHERE session = ?",
                       [(*counts, sid) for sid, counts in self.sessions.items()])
        db.executemany(
            "INSERT INTO hourly VALUES (?, ?, ?, ?, ?) ON CONFLICT (hour, identity) DO UPDATE "
            "SET statements = statements + excluded.statements, "
            "denied = denied + excluded.denied, phi_rows = phi_rows + excluded.phi_rows",
            [(*key, *counts) for key, counts in self.hourly.items()])
        db.executemany("INSERT INTO table_use VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                       "SET statements = statements + excluded.statements, "
                       "phi = max(phi, excluded.phi)",
                       [(name, *use) for name, use in self.tables.items()])
        self.sessions.clear()
        self.hourly.clear()
        self.tables.clear()
