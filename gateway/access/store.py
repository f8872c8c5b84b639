"""Access requests and grants in a small SQLite file shared by the gateway and the CLI.

Written by ``phigate access …`` (``gateway/access/cli.py``) and read every poll by the
gateway's watcher (``gateway/access/watcher.py``), which also journals the ``events``
table in order, so every request, approval, denial, grant, revocation and expiry reaches
the hash-chained journal even though the CLI never holds the journal's lock. A grant is
an approved request: its id is the request's id, and statements run under it name it.
Every change is one ``BEGIN IMMEDIATE`` transaction: two approvers at once cannot both be
"the first", and a revocation cannot interleave with an approval.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from policies.approval import Approval

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY, rule TEXT NOT NULL, requester TEXT NOT NULL, reason TEXT NOT NULL,
    duration_s REAL NOT NULL, created_at REAL NOT NULL, state TEXT NOT NULL,
    granted_at REAL, expires_at REAL, closed_by TEXT, close_reason TEXT);
CREATE TABLE IF NOT EXISTS approvals (
    request_id TEXT NOT NULL, approver TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (request_id, approver));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL,
    request_id TEXT NOT NULL, actor TEXT NOT NULL, fields TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
PENDING, APPROVED, DENIED, REVOKED, EXPIRED = "pending", "approved", "denied", "revoked", "expired"
BUSY_TIMEOUT_MS = 5000  # a CLI run waits this long for the gateway's poll (it takes microseconds)


class AccessError(Exception):
    """A request that cannot be made, approved, denied or revoked; the message says why."""


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    rule: str
    requester: str
    reason: str
    duration_s: float
    created_at: float
    state: str
    granted_at: float | None
    expires_at: float | None
    closed_by: str | None
    close_reason: str | None
    approvers: tuple[str, ...] = ()

    def active(self, now: float) -> bool:
        return self.state == APPROVED and self.expires_at is not None and self.expires_at > now


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    at: float
    kind: str  # request, approval, grant, denial, revocation, expiry
    request_id: str
    actor: str
    fields: dict[str, object]


class AccessStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # who may see who asked for what
        os.close(fd)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a grant said "approved" stays approved
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _event(self, db: sqlite3.Connection, now: float, kind: str, request: str, actor: str,
               **fields: object) -> None:
        db.execute("INSERT INTO events (at, kind, request_id, actor, fields) VALUES (?,?,?,?,?)",
                   (now, kind, request, actor, json.dumps(fields, sort_keys=True)))

    # ---------------------------------------------------------------- changes

    def request(self, rule: str, requester: str, reason: str, duration_s: float,
                now: float) -> Request:
        request_id = secrets.token_hex(6)
        with self._transaction() as db:
            db.execute("INSERT INTO requests (id, rule, requester, reason, duration_s, "
                       "created_at, state) VALUES (?,?,?,?,?,?,?)",
                       (request_id, rule, requester, reason, duration_s, now, PENDING))
            self._event(db, now, "request", request_id, requester, rule=rule, reason=reason,
                        duration_s=duration_s)
        return self.get(request_id)

    def approve(self, request_id: str, approver: str, groups: frozenset[str],
                approval: Approval, now: float) -> Request:
        with self._transaction() as db:
            request = self._pending(db, request_id)
            if approver == request.requester:
                raise AccessError("you cannot approve your own request")
            if not approval.may_approve(approver, groups):
                raise AccessError(f"you are not an approver of rule {request.rule}")
            if approver in request.approvers:
                raise AccessError("you have already approved this request")
            db.execute("INSERT INTO approvals VALUES (?,?,?)", (request_id, approver, now))
            self._event(db, now, "approval", request_id, approver, rule=request.rule,
                        requester=request.requester)
            if len(request.approvers) + 1 >= approval.min_approvals:
                expires = now + request.duration_s
                db.execute("UPDATE requests SET state=?, granted_at=?, expires_at=? WHERE id=?",
                           (APPROVED, now, expires, request_id))
                self._event(db, now, "grant", request_id, approver, rule=request.rule,
                            requester=request.requester, expires_at=expires)
        return self.get(request_id)

    def deny(self, request_id: str, actor: str, groups: frozenset[str], approval: Approval,
             reason: str, now: float) -> Request:
        with self._transaction() as db:
            request = self._pending(db, request_id)
            if not approval.may_approve(actor, groups) or actor == request.requester:
                raise AccessError(f"you are not an approver of rule {request.rule}")
            self._close(db, request, DENIED, actor, reason, now, "denial")
        return self.get(request_id)

    def revoke(self, request_id: str, actor: str, may_approve: bool, reason: str,
               now: float) -> Request:
        """The requester (giving it up) or an approver ends a pending or active request."""
        with self._transaction() as db:
            request = self._load(db, request_id)
            if actor != request.requester and not may_approve:
                raise AccessError("only the requester or an approver may revoke")
            if request.state not in (PENDING, APPROVED) or (
                    request.state == APPROVED and not request.active(now)):
                raise AccessError(f"request {request_id} is {request.state}, nothing to revoke")
            self._close(db, request, REVOKED, actor, reason, now, "revocation")
        return self.get(request_id)

    def expire_due(self, now: float) -> int:
        """Record the expiry of grants whose time is up (they stopped applying at expires_at)."""
        with self._transaction() as db:
            due = db.execute("SELECT id, rule, requester, expires_at FROM requests "
                             "WHERE state=? AND expires_at<=?", (APPROVED, now)).fetchall()
            for row in due:
                db.execute("UPDATE requests SET state=? WHERE id=?", (EXPIRED, row["id"]))
                self._event(db, now, "expiry", row["id"], "phigate", rule=row["rule"],
                            requester=row["requester"], expires_at=row["expires_at"])
        return len(due)

    def _close(self, db: sqlite3.Connection, request: Request, state: str, actor: str,
               reason: str, now: float, kind: str) -> None:
        db.execute("UPDATE requests SET state=?, closed_by=?, close_reason=? WHERE id=?",
                   (state, actor, reason, request.id))
        self._event(db, now, kind, request.id, actor, rule=request.rule,
                    requester=request.requester, reason=reason)

    def _pending(self, db: sqlite3.Connection, request_id: str) -> Request:
        request = self._load(db, request_id)
        if request.state != PENDING:
            raise AccessError(f"request {request_id} is {request.state}, not pending")
        return request

    # ---------------------------------------------------------------- reading

    def _load(self, db: sqlite3.Connection, request_id: str) -> Request:
        row = db.execute("SELECT * FROM requests WHERE id=?", (request_id,)).fetchone()
        if row is None:
            raise AccessError(f"no access request {request_id}")
        approvers = tuple(r[0] for r in db.execute(
            "SELECT approver FROM approvals WHERE request_id=? ORDER BY at", (request_id,)))
        return Request(**dict(row), approvers=approvers)

    def get(self, request_id: str) -> Request:
        return self._load(self._db, request_id)

    def requests(self, states: tuple[str, ...] | None = None) -> list[Request]:
        ids = [row[0] for row in self._db.execute("SELECT id FROM requests ORDER BY created_at")]
        found = [self.get(i) for i in ids]
        return [r for r in found if states is None or r.state in states]

    def active_grants(self, now: float) -> list[Request]:
        rows = self._db.execute("SELECT id FROM requests WHERE state=? AND expires_at>?",
                                (APPROVED, now)).fetchall()
        return [self.get(row[0]) for row in rows]

    def events_after(self, seq: int) -> list[StoredEvent]:
        rows = self._db.execute("SELECT * FROM events WHERE seq>? ORDER BY seq", (seq,))
        return [StoredEvent(r["seq"], r["at"], r["kind"], r["request_id"], r["actor"],
                            json.loads(r["fields"])) for r in rows]

    def meta(self, key: str, default: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else default

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT INTO meta VALUES (?,?) ON CONFLICT(key) DO UPDATE SET "
                         "value=excluded.value", (key, value))
