"""Client authentication: SCRAM-SHA-256 against gateway identities, or a token login.

Driven by ``gateway/proxy/startup.py`` once the start-up packet is in. The config
holds only SCRAM verifiers. A wrong user and a wrong password look the same on
the wire (SQLSTATE 28P01, same message shape, same constant delay), and
repeated failures are rate-limited: per user name and client IP (guessing one
person's password), and, with a much higher limit, per client IP over all users
(spraying), so a mistyped password never locks out everyone behind one NAT.

A user who is not a local identity may log in with a credential the assembly knows how
to check (single sign-on: an OpenID Connect token, ``gateway/sso``), through the
:class:`PasswordLogin` interface: the gateway then asks for a cleartext password, and
only over TLS, since whoever reads the token can replay it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from protocols.postgres import messages as m
from protocols.postgres.decoder import as_sasl_initial_response, as_sasl_response, decode_frontend
from protocols.postgres.encoder import encode
from protocols.postgres.errors import ProtocolError
from protocols.postgres.scram import (
    ScramAuthenticationFailed,
    ScramError,
    ScramServer,
)

from ..errors import AuthenticationFailed, AuthorizationRejected
from ..settings.config import UserSettings
from .wire import FrameStream

SCRAM = "SCRAM-SHA-256"


@dataclass(frozen=True, slots=True)
class AuthResult:
    name: str
    groups: frozenset[str]
    method: str  # "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS" or a PasswordLogin's method
    ends_at: float | None = None  # wall-clock time the session must end (token expiry)
    details: Mapping[str, str] = field(default_factory=dict)  # journaled with the login


class PasswordLogin(Protocol):
    """Checks a password-like credential (an SSO token) for a user with no local identity."""

    method: str  # journaled, e.g. "oidc"

    async def verify(self, user_name: str, password: str) -> AuthResult:
        """The identity ``password`` proves for ``user_name``; raises ExternalLoginFailed."""


class ExternalLoginFailed(AuthenticationFailed):
    """A PasswordLogin refused the credential; ``details`` go to the journal, never the token."""

    def __init__(self, message: str, *, method: str, detail: str, hint: str | None = None,
                 details: Mapping[str, str] | None = None) -> None:
        super().__init__(message, detail=detail, hint=hint)
        self.method = method
        self.details = dict(details or {})


class PlaintextTokenRefused(ExternalLoginFailed):
    sqlstate = AuthorizationRejected.sqlstate  # 28000, like pg_hba's "no encryption"


class FailureLimiter:
    """Counts authentication failures in a sliding window, per (user, IP) and per IP."""

    def __init__(self, max_failures: int, window_s: float, max_failures_per_ip: int) -> None:
        self.max_failures = max_failures
        self.max_failures_per_ip = max_failures_per_ip
        self.window_s = window_s
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] > self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def blocked(self, user_name: str, client_ip: str) -> bool:
        now = time.monotonic()
        return (len(self._recent((user_name, client_ip), now)) >= self.max_failures
                or len(self._recent(("", client_ip), now)) >= self.max_failures_per_ip)

    def record(self, user_name: str, client_ip: str) -> None:
        now = time.monotonic()
        # ("", ip) is the per-IP count: no user is named "" (start-up refuses an empty name).
        for key in ((user_name, client_ip), ("", client_ip)):
            self._recent(key, now)
            self._failures.setdefault(key, deque()).append(now)


class ClientAuthenticator:
    """Runs the SCRAM exchange with one client; shared state is the failure limiter."""

    def __init__(self, users: Mapping[str, UserSettings], limiter: FailureLimiter,
                 failure_delay_s: float, external: PasswordLogin | None = None) -> None:
        self.users = users
        self.external = external
        self.limiter = limiter
        self.failure_delay_s = failure_delay_s
        # Keyed fake verifiers for unknown users must not be predictable across restarts.
        self._unknown_user_secret = secrets.token_bytes(32)

    async def authenticate(self, stream: FrameStream, user_name: str, client_ip: str,
                           channel_binding: bytes | None, tls: bool) -> AuthResult:
        """SCRAM (or the external login) with the client; raises AuthenticationFailed."""
        started = time.monotonic()
        user = self.users.get(user_name)
        try:
            if self.limiter.blocked(user_name, client_ip):
                raise AuthenticationFailed(_failure_message(user_name),
                                           detail="too many failed attempts")
            if user is None and self.external is not None:
                return await self._external(stream, self.external, user_name, tls)
            method = await self._scram(stream, user, user_name, channel_binding)
            if user is None:  # unreachable: the fake verifier never matches; stay defensive
                raise AuthenticationFailed(_failure_message(user_name))
        except (ScramError, ScramAuthenticationFailed, ProtocolError) as e:
            self.limiter.record(user_name, client_ip)
            await self._constant_delay(started)
            raise AuthenticationFailed(_failure_message(user_name)) from e
        except AuthenticationFailed:
            self.limiter.record(user_name, client_ip)
            await self._constant_delay(started)
            raise
        return AuthResult(name=user.name, groups=user.groups, method=method)

    async def _external(self, stream: FrameStream, login: PasswordLogin, user_name: str,
                        tls: bool) -> AuthResult:
        if not tls:
            raise PlaintextTokenRefused(
                f'phigate: user "{user_name}" logs in with a single sign-on token, which is '
                "accepted only over TLS (anyone who reads a token can replay it)",
                method=login.method, detail="token login without TLS refused",
                hint="connect with sslmode=require")
        await stream.send(encode(m.AuthenticationCleartextPassword()))
        data = _password_message(await stream.read_frame()).data
        password = data[:-1] if data.endswith(b"\0") else data
        try:
            text = password.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ExternalLoginFailed(_failure_message(user_name), method=login.method,
                                      detail="password is not UTF-8") from e
        result = await login.verify(user_name, text)
        await stream.send(encode(m.AuthenticationOk()))
        return result

    async def _scram(self, stream: FrameStream, user: UserSettings | None, user_name: str,
                     channel_binding: bytes | None) -> str:
        server = ScramServer(
            user.verifier if user else None,
            channel_binding=channel_binding,
            username=user_name,
            mock_secret=self._unknown_user_secret,
        )
        await stream.send(encode(m.AuthenticationSASL(mechanisms=server.mechanisms())))
        initial = as_sasl_initial_response(_password_message(await stream.read_frame()))
        server_first = server.first(initial.mechanism, initial.data or b"")
        await stream.send(encode(m.AuthenticationSASLContinue(data=server_first)))
        response = as_sasl_response(_password_message(await stream.read_frame()))
        server_final = server.final(response.data)
        await stream.send(encode(m.AuthenticationSASLFinal(data=server_final)),
                          encode(m.AuthenticationOk()))
        return initial.mechanism

    async def _constant_delay(self, started: float) -> None:
        """Every failure takes the same time, whatever failed and however fast."""
        remaining = self.failure_delay_s - (time.monotonic() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)


def _password_message(frame: bytes) -> m.PasswordMessage:
    message = decode_frontend(frame)
    if not isinstance(message, m.PasswordMessage):
        raise AuthenticationFailed("expected SASL response",
                                   detail=f"got {type(message).__name__}")
    return message


def _failure_message(user_name: str) -> str:
    # PostgreSQL's own wording, so clients and operators recognise it.
    return f'password authentication failed for user "{user_name}"'
