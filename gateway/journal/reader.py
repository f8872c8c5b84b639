"""Reading entries back, in order, with the filters ``phigate journal show`` offers.

Streams lines across segments without holding a segment in memory, skips an
unterminated last line (a write in progress or a crash's torn line), and
resolves each entry's user and client from its session's ``session_start``,
so ``--user alice`` also finds her ``statement`` and ``outcome`` entries. This
module trusts the bytes; ``verify`` is what checks them. Driven by the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import segments
from .canonical import format_time

# Field names the gateway uses, with the alternatives a reader accepts.
_SESSION_KEYS = ("session", "session_id")
_USER_KEYS = ("user", "identity")


@dataclass(frozen=True, slots=True)
class Entry:
    segment: str
    line: int
    raw: bytes
    fields: dict[str, object]
    user: str | None
    client: str | None

    @property
    def seq(self) -> int:
        seq = self.fields.get("seq")
        return seq if isinstance(seq, int) else -1

    @property
    def session(self) -> str | None:
        return _first_str(self.fields, _SESSION_KEYS)


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """All given conditions must hold; times are canonical journal timestamps."""

    user: str | None = None
    session: str | None = None
    since: str | None = None
    until: str | None = None
    type: str | None = None
    decision: str | None = None
    table: str | None = None

    def matches(self, entry: Entry) -> bool:
        fields = entry.fields
        time = fields.get("time")
        return ((self.type is None or fields.get("type") == self.type)
                and (self.user is None or entry.user == self.user)
                and (self.session is None or entry.session == self.session)
                and (self.since is None or (isinstance(time, str) and time >= self.since))
                and (self.until is None or (isinstance(time, str) and time < self.until))
                and (self.decision is None or decision_of(fields) == self.decision)
                and (self.table is None or _names_table(tables_of(fields), self.table)))


def parse_time_bound(text: str) -> str:
    """``2026-11-30``, ``2026-11-30T10:15``, ``…Z`` or ``…+01:00`` → a journal timestamp.

    Times without a zone are UTC, like the journal's. ValueError if unparseable.
    """
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ns = int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
    return format_time(ns)


def iter_lines(directory: Path) -> Iterator[tuple[str, int, bytes]]:
    """(segment name, line number, line without newline) for every complete line."""
    for segment in segments.list_segments(directory):
        for number, line in enumerate(segments.iter_written_lines(segment.path), 1):
            yield segment.name, number, line[:-1]


def iter_entries(directory: Path, where: EntryFilter | None = None) -> Iterator[Entry]:
    """Entries in chain order; lines that do not parse are skipped (``verify`` reports them)."""
    sessions: dict[str, tuple[str | None, str | None]] = {}
    for name, number, raw in iter_lines(directory):
        try:
            fields = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(fields, dict):
            continue
        session = _first_str(fields, _SESSION_KEYS)
        user, client = _first_str(fields, _USER_KEYS), client_of(fields)
        if fields.get("type") == "session_start" and session is not None:
            sessions[session] = (user, client)
        elif session is not None and session in sessions:
            known_user, known_client = sessions[session]
            user, client = user or known_user, client or known_client
        entry = Entry(name, number, raw, fields, user, client)
        if where is None or where.matches(entry):
            yield entry


def client_of(fields: dict[str, object]) -> str | None:
    client = fields.get("client")
    if isinstance(client, str):
        return client
    ip, port = fields.get("client_ip"), fields.get("client_port")
    if isinstance(ip, str):
        return f"{ip}:{port}" if port is not None else ip
    return None


def decision_of(fields: dict[str, object]) -> str | None:
    decision = fields.get("decision")
    if isinstance(decision, dict):
        decision = decision.get("action")
    return decision if isinstance(decision, str) else None


def tables_of(fields: dict[str, object]) -> list[str]:
    tables = fields.get("tables")
    return [t for t in tables if isinstance(t, str)] if isinstance(tables, list) else []


def _names_table(tables: list[str], wanted: str) -> bool:
    """``patients`` matches ``public.patients``; a qualified name must match exactly."""
    return any(t == wanted or ("." not in wanted and t.rsplit(".", 1)[-1] == wanted)
               for t in tables)


def _first_str(fields: dict[str, object], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = fields.get(key)
        if isinstance(value, str):
            return value
    return None
