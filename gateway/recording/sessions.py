"""``phigate sessions list``: who connected, from where, for how long, and what they did.

Built from the journal alone (``session_start``, ``statement``, ``outcome``,
``session_end``, ``recording_*``), so it works without the recording key and
lists unrecorded sessions too. Filters: identity, database, a time range on
the session start, and "had a denial". Driven by ``cli``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ..journal.reader import parse_time_bound
from .binding import SessionFacts, scan_journal


@dataclass(frozen=True, slots=True)
class SessionRow:
    session: str
    identity: str
    client_ip: str
    database: str
    start: str  # journal timestamp, RFC 3339 UTC
    duration_s: float | None  # None: no session end in the journal
    statements: int
    rows: int
    denials: int
    state: str  # ended, open, cut off (the gateway restarted without ending it)
    recorded: bool

    def as_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SessionFilter:
    user: str | None = None
    database: str | None = None
    since: str | None = None  # journal timestamps (see parse_time_bound)
    until: str | None = None
    denied: bool = False

    @classmethod
    def parse(cls, user: str | None, database: str | None, since: str | None,
              until: str | None, denied: bool) -> SessionFilter:
        """ValueError names the bad bound."""
        try:
            low = parse_time_bound(since) if since else None
            high = parse_time_bound(until) if until else None
        except ValueError as e:
            raise ValueError(f"--since/--until: {e}") from e
        return cls(user, database, low, high, denied)

    def matches(self, row: SessionRow) -> bool:
        return ((self.user is None or row.identity == self.user)
                and (self.database is None or row.database == self.database)
                and (self.since is None or row.start >= self.since)
                and (self.until is None or row.start < self.until)
                and (not self.denied or row.denials > 0))


def list_sessions(journal_dir: Path, where: SessionFilter) -> list[SessionRow]:
    return [row for row in _rows(scan_journal(journal_dir).values()) if where.matches(row)]


def _rows(sessions: Iterable[SessionFacts]) -> Iterator[SessionRow]:
    for facts in sessions:
        start = facts.start
        if start is None:
            continue  # entries of a session whose start was pruned away
        end = facts.end or {}
        duration = end.get("duration_s")
        state = "ended" if facts.end is not None else "cut off" if facts.cut_off else "open"
        yield SessionRow(
            session=facts.session, identity=str(start.get("identity", "?")),
            client_ip=str(start.get("client", "?")).rsplit(":", 1)[0],
            database=str(start.get("database", "?")), start=str(start.get("time", "")),
            duration_s=float(duration) if isinstance(duration, int | float) else None,
            statements=facts.statements,
            rows=_int(end.get("rows"), facts.rows), denials=facts.denied, state=state,
            recorded=facts.recorded)


def _int(value: object, fallback: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else fallback


def format_rows(rows: list[SessionRow]) -> list[str]:
    header = ["SESSION", "IDENTITY", "CLIENT", "DATABASE", "START (UTC)", "DURATION",
              "STMTS", "ROWS", "DENIED", "REC", "STATE"]
    table = [header] + [[
        r.session, r.identity, r.client_ip, r.database, _start(r.start), _duration(r),
        str(r.statements), str(r.rows), str(r.denials), "yes" if r.recorded else "no", r.state,
    ] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    right = {5, 6, 7, 8}
    return ["  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                      for i, (cell, w) in enumerate(zip(line, widths, strict=True))).rstrip()
            for line in table]


def _start(stamp: str) -> str:
    try:
        moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _duration(row: SessionRow) -> str:
    if row.duration_s is None:
        return "-"
    seconds = row.duration_s
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
