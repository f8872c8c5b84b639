"""The search index: the journal's statements, sessions and alerts in SQLite with FTS5.

:meth:`SearchIndex.update` reads the journal from where it stopped (``tail``), checking every
link of the chain, and commits in batches, so it keeps up with a live journal incrementally.
On open it re-reads the last indexed line and compares its hash with the one it stored: a
journal that was replaced, rolled back or pruned past the index's position is indexed again
from scratch. A link that does not hold stops indexing there and is reported (the integrity
panel shows it); the index never holds what the chain does not vouch for. Driven by the
console's background task and by ``bench/console.py``; queries are in ``search``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..journal.chain import link
from .tail import ChainBroken, Position, PositionLost, read_from
from .tallies import Tallies

BATCH = 20_000  # lines per transaction: big enough to amortise the commit
SCHEMA_VERSION = "2"


@dataclass(frozen=True, slots=True)
class IndexState:
    last_seq: int
    entries: int
    position: Position
    broken: str | None  # why indexing stopped at a bad link, if it did
    rebuilt: bool


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        db = sqlite3.connect(path, check_same_thread=False)
    db.row_factory = sqlite3.Row
    return db


class SearchIndex:
    """One writer (this object, behind a lock); readers open their own connections."""

    def __init__(self, path: Path, journal_dir: Path) -> None:
        self.path = path
        self.journal_dir = journal_dir
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._sessions: dict[str, tuple[Any, ...]] = {}
        self._tallies = Tallies()
        self._last: tuple[object, object] = (None, None)
        self._db = self._open()
        if self._meta("schema") != SCHEMA_VERSION or self._meta("journal_dir") != str(
                journal_dir):
            self._reset()  # another layout or another journal: a cache, so start afresh

    def _open(self) -> sqlite3.Connection:
        db = connect(self.path)
        db.executescript(files(__package__).joinpath("schema.sql").read_text())
        return db

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------ state

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def _set_meta(self, **values: object) -> None:
        self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                             [(k, None if v is None else str(v)) for k, v in values.items()])

    def _position(self) -> Position:
        segment = self._meta("segment")
        return Position(segment, int(self._meta("offset") or 0), self._meta("head"))

    def state(self) -> IndexState:
        return IndexState(int(self._meta("last_seq") or 0), int(self._meta("entries") or 0),
                          self._position(), self._meta("broken"), False)

    def _reset(self) -> None:
        """Start from an empty index: a new file (readers still open keep the old one)."""
        self._db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self._db = self._open()
        self._set_meta(schema=SCHEMA_VERSION, journal_dir=self.journal_dir)
        self._db.commit()
        self._sessions.clear()
        self._tallies = Tallies()

    def _still_linked(self, position: Position) -> bool:
        """Whether the last line indexed is still in the journal, byte for byte."""
        if position.segment is None:
            return True
        last_offset = self._meta("last_line_offset")
        if last_offset is None:
            return False
        try:
            with open(self.journal_dir / position.segment, "rb") as f:
                f.seek(int(last_offset))
                raw = f.read(position.offset - int(last_offset))
        except OSError:
            return False
        return raw.endswith(b"\n") and link(raw[:-1]) == position.head

    # ------------------------------------------------------------ updating

    def update(self, max_lines: int | None = None) -> IndexState:
        """Index what the journal gained since the last call; rebuild if it cannot be trusted."""
        with self._lock:
            rebuilt = False
            position = self._position()
            if not self._still_linked(position):
                self._reset()
                position, rebuilt = Position(), True
            try:
                self._index_from(position, max_lines)
            except PositionLost:
                self._reset()
                rebuilt = True
                self._index_from(Position(), max_lines)
            state = self.state()
            return IndexState(state.last_seq, state.entries, state.position, state.broken,
                              rebuilt)

    def _index_from(self, position: Position, max_lines: int | None) -> None:
        count = 0
        entries = int(self._meta("entries") or 0)
        last_offset: int | None = None
        self._db.execute("BEGIN")
        try:
            for fields, raw, after in read_from(self.journal_dir, position):
                self._add(fields)
                count += 1
                last_offset = after.offset - len(raw) - 1
                position = after
                if count % BATCH == 0:
                    self._checkpoint(position, last_offset, entries + count)
                    self._db.execute("COMMIT")
                    self._db.execute("BEGIN")
                if max_lines is not None and count >= max_lines:
                    break
            broken = None
        except ChainBroken as e:
            broken = str(e)
        if count:
            self._checkpoint(position, last_offset, entries + count)
        self._set_meta(broken=broken)
        self._db.execute("COMMIT")

    def _checkpoint(self, position: Position, last_offset: int | None, entries: int) -> None:
        self._tallies.flush(self._db)
        self._set_meta(segment=position.segment, offset=position.offset, head=position.head,
                       last_line_offset=last_offset, entries=entries, last_seq=self._last[0],
                       last_time=self._last[1])

    def _add(self, fields: dict[str, Any]) -> None:
        kind = fields.get("type")
        self._last = (fields.get("seq"), fields.get("time"))
        handler = _HANDLERS.get(kind)  # type: ignore[arg-type]
        if handler is not None:
            handler(self, fields)

    # ------------------------------------------------------------ entry types

    def _session_start(self, f: dict[str, Any]) -> None:
        sid = _text(f.get("session"))
        if sid is None:
            return
        row = (sid, _text(f.get("identity") or f.get("user")), " ".join(f.get("groups") or []),
               _text(f.get("client")), _text(f.get("database")),
               _text(f.get("application_name")), _text(f.get("tls")), _text(f.get("reason")),
               f.get("time"), f.get("seq"))
        self._db.execute("INSERT OR REPLACE INTO sessions (session, identity, groups, client, "
                         "database, application, tls, reason, start_time, start_seq) "
                         "VALUES (?,?,?,?,?,?,?,?,?,?)", row)
        self._sessions[sid] = (row[1], row[4], row[3])

    def _who(self, f: dict[str, Any], sid: str | None) -> tuple[Any, ...]:
        """(identity, database, client): the entry's own (self-contained entries) or its
        session's."""
        known = self._sessions.get(sid or "")
        if known is None and sid is not None:
            row = self._db.execute("SELECT identity, database, client FROM sessions "
                                   "WHERE session = ?", (sid,)).fetchone()
            known = tuple(row) if row else (None, None, None)
            self._sessions[sid] = known
        known = known or (None, None, None)
        return (_text(f.get("identity") or f.get("user")) or known[0],
                _text(f.get("database")) or known[1], _text(f.get("client")) or known[2])

    def _statement(self, f: dict[str, Any]) -> None:
        sid = _text(f.get("session"))
        identity, database, client = self._who(f, sid)
        tables = [t for t in f.get("tables") or [] if isinstance(t, str)]
        phi = [t for t in f.get("phi_tables") or [] if isinstance(t, str)]
        refused = f.get("refused")
        verdict = "deny" if f.get("decision") == "deny" or refused else str(
            f.get("decision") or "allow")
        sql = f.get("sql") if isinstance(f.get("sql"), str) else ""
        seq, time = f.get("seq"), f.get("time")
        self._db.execute(
            "INSERT OR REPLACE INTO statements (seq, time, session, n, identity, database, "
            "client, verdict, rules, tables, phi, reason, sql, refused) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (seq, time, sid, f.get("n"), identity, database, client, verdict,
             " ".join(r for r in f.get("rules") or [] if isinstance(r, str)),
             " ".join(tables), 1 if phi else 0, _text(f.get("reason")), sql,
             json.dumps(refused) if isinstance(refused, dict) else None))
        self._db.execute("INSERT INTO statements_text (rowid, sql, tables) VALUES (?, ?, ?)",
                         (seq, sql, " ".join(tables)))
        opened = (seq, time, identity, bool(phi))
        self._tallies.statement(sid, f.get("n"), opened, verdict == "deny", tables, phi)

    def _outcome(self, f: dict[str, Any]) -> None:
        sid = _text(f.get("session"))
        opened = self._tallies.open.pop((sid, f.get("n")), None)
        if opened is None:
            row = self._db.execute("SELECT seq, time, identity, phi FROM statements WHERE "
                                   "session = ? AND n = ? ORDER BY seq DESC LIMIT 1",
                                   (sid, f.get("n"))).fetchone()
            if row is None:
                return
            opened = (row["seq"], row["time"], row["identity"], bool(row["phi"]))
        rows: int = f["rows"] if isinstance(f.get("rows"), int) else 0
        cut = f.get("row_limit_hit") or f.get("byte_limit_hit")
        verdict = ", verdict = 'cut'" if cut else ""
        self._db.execute(
            f"UPDATE statements SET rows = ?, bytes = ?, duration_ms = ?, sqlstate = ?, "
            f"error = ?{verdict} WHERE seq = ?",
            (rows, f.get("bytes"), f.get("duration_ms"), _text(f.get("sqlstate")),
             _text(f.get("error")), opened[0]))
        self._tallies.outcome(sid, opened, rows)

    def _session_end(self, f: dict[str, Any]) -> None:
        recording = f.get("recording")
        self._db.execute(
            "UPDATE sessions SET end_time = ?, end_kind = ?, duration_s = ?, "
            "recording_final = ? WHERE session = ?",
            (f.get("time"), _text(f.get("end")), f.get("duration_s"),
             json.dumps(recording) if isinstance(recording, dict) else None,
             _text(f.get("session"))))
        self._sessions.pop(str(f.get("session")), None)

    def _recording_started(self, f: dict[str, Any]) -> None:
        self._db.execute("UPDATE sessions SET recording_file = ? WHERE session = ?",
                         (_text(f.get("file")), _text(f.get("session"))))

    def _recording_checkpoint(self, f: dict[str, Any]) -> None:
        """Only the newest is kept: a file that extends it extends every earlier one."""
        self._db.execute("UPDATE sessions SET recording_checkpoint = ? WHERE session = ?",
                         (json.dumps({"bytes": f.get("bytes"), "sha256": f.get("sha256")}),
                          _text(f.get("session"))))

    def _start(self, f: dict[str, Any]) -> None:
        """A gateway start: sessions still open were cut off by the previous one's end."""
        self._db.execute("UPDATE sessions SET cut_off = 1 WHERE end_time IS NULL")

    def _alert(self, f: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO alerts VALUES (?,?,?,?,?,?,?,?,?)",
            (f.get("seq"), f.get("time"), _text(f.get("rule")), _text(f.get("condition")),
             _text(f.get("subject")), _text(f.get("summary")), _text(f.get("identity")),
             _text(f.get("session")), f.get("trigger_seq")))

    def _checkpoint_entry(self, f: dict[str, Any]) -> None:
        self._set_meta(checkpoint_seq=f.get("seq"), checkpoint_time=f.get("time"))


_HANDLERS = {
    "session_start": SearchIndex._session_start, "statement": SearchIndex._statement,
    "outcome": SearchIndex._outcome, "session_end": SearchIndex._session_end,
    "recording_started": SearchIndex._recording_started,
    "recording_checkpoint": SearchIndex._recording_checkpoint, "start": SearchIndex._start,
    "alert": SearchIndex._alert, "checkpoint": SearchIndex._checkpoint_entry,
}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
