"""Who may use the console: password checks, login rate limits, sessions and CSRF tokens.

Identities are the gateway's own ``users:`` (one identity store): the typed password is run
through the user's SCRAM verifier (PBKDF2 with its salt and count, constant-time compare), an
unknown name through a stable stand-in verifier so both cost the same. People the ``sso:``
provider vouches for (``signon``) come with the groups of its token, and never under a local
identity's name (those sign in with their password, as at the gateway). Only identities named
in ``console.auditors`` (directly or by group) get in. Failures are counted like the
gateway's own within ``limits.auth_failure_window``: per (name, client address) up to
``limits.auth_max_failures`` and per address up to ``limits.auth_max_failures_per_ip``; past
either, logins are refused without checking the password. Sessions are random tokens
held in memory (a restart logs everyone out), with idle and absolute lifetimes; each carries
its own CSRF token. Driven by ``routes``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from protocols.postgres.scram import check_password, mock_verifier

from ..settings.config import Limits, UserSettings

TOKEN_BYTES = 32
MAX_TRACKED = 10_000  # addresses and names whose failures are remembered (bounded memory)


@dataclass(slots=True)
class ConsoleSession:
    token: str
    identity: str
    csrf: str
    created: float
    seen: float
    grants: dict[str, float] = field(default_factory=dict)  # session id → when journaled


class Authenticator:
    def __init__(self, users: Callable[[], Mapping[str, UserSettings]],
                 auditors: frozenset[str], limits: Limits) -> None:
        self._users = users
        self._auditors = auditors
        self._limits = limits
        self._mock_secret = secrets.token_bytes(32)
        self._failures: dict[str, deque[float]] = {}

    def may_audit(self, user: UserSettings) -> bool:
        return self._audits(user.name, user.groups)

    def _audits(self, name: str, groups: frozenset[str]) -> bool:
        return name in self._auditors or bool(groups & self._auditors)

    def sso_refusal(self, name: str, groups: frozenset[str]) -> str | None:
        """Why a person the provider vouches for may not use the console (None: they may)."""
        if name in self._users():
            return f"{name} is a local identity: sign in with its password"
        if not self._audits(name, groups):
            return f"{name} is not an auditor"
        return None

    def throttled(self, username: str, address: str) -> bool:
        """Past the gateway's own limits: per (name, address) and per address."""
        now = time.monotonic()
        return (len(self._recent(f"{username}@{address}", now)) >= self._limits.auth_max_failures
                or self.address_throttled(address))

    def address_throttled(self, address: str) -> bool:
        """Past the per-address limit (checked before the name is known)."""
        return (len(self._recent(address, time.monotonic()))
                >= self._limits.auth_max_failures_per_ip)

    def check(self, username: str, password: str) -> str | None:
        """The identity if the password is right and it is an auditor; slow on purpose."""
        user = self._users().get(username)
        verifier = user.verifier if user is not None else mock_verifier(
            self._mock_secret, username)
        ok = check_password(verifier, password)
        if user is None or not ok or not self.may_audit(user):
            return None
        return user.name

    def failed(self, username: str, address: str) -> None:
        now = time.monotonic()
        if len(self._failures) >= MAX_TRACKED:
            self._failures.clear()  # under a flood, forget rather than grow
        for key in (f"{username}@{address}", address):
            self._recent(key, now).append(now)

    def _recent(self, key: str, now: float) -> deque[float]:
        window = self._failures.setdefault(key, deque())
        while window and now - window[0] > self._limits.auth_failure_window_s:
            window.popleft()
        return window


class SessionStore:
    def __init__(self, idle_s: float, max_s: float) -> None:
        self._idle_s = idle_s
        self._max_s = max_s
        self._sessions: dict[str, ConsoleSession] = {}

    def create(self, identity: str) -> ConsoleSession:
        now = time.monotonic()
        self._expire(now)
        session = ConsoleSession(secrets.token_urlsafe(TOKEN_BYTES), identity,
                                 secrets.token_urlsafe(TOKEN_BYTES), now, now)
        self._sessions[_key(session.token)] = session
        return session

    def get(self, token: str | None) -> ConsoleSession | None:
        if not token:
            return None
        session = self._sessions.get(_key(token))
        now = time.monotonic()
        if session is None or self._expired(session, now):
            self._sessions.pop(_key(token), None)
            return None
        session.seen = now
        return session

    def end(self, token: str) -> None:
        self._sessions.pop(_key(token), None)

    def _expired(self, session: ConsoleSession, now: float) -> bool:
        return now - session.seen > self._idle_s or now - session.created > self._max_s

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[key]


def _key(token: str) -> str:
    """Sessions are looked up by a hash of the token, so timing reveals nothing of it."""
    return hashlib.sha256(token.encode()).hexdigest()


class LoginCsrf:
    """CSRF for the login form itself (no session yet): a random cookie and its HMAC."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def new(self) -> tuple[str, str]:
        """(cookie value, form token)."""
        nonce = secrets.token_urlsafe(TOKEN_BYTES)
        return nonce, self._sign(nonce)

    def valid(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        return hmac.compare_digest(self._sign(cookie), token)

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()


def same_token(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
