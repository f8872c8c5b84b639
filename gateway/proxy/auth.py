"""Client authentication: SCRAM-SHA-256 against gateway identities.

Driven by ``gateway/proxy/startup.py`` once the start-up packet is in. The config
holds only SCRAM verifiers. A wrong user and a wrong password look the same on
the wire (SQLSTATE 28P01, same message shape, same constant delay), and
repeated failures from one IP or for one user name are rate-limited.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from protocols.postgres import messages as m
from protocols.postgres.decoder import as_sasl_initial_response, as_sasl_response, decode_frontend
from protocols.postgres.encoder import encode
from protocols.postgres.errors import ProtocolError
from protocols.postgres.scram import (
    ScramAuthenticationFailed,
    ScramError,
    ScramServer,
)

from ..errors import AuthenticationFailed
from ..settings.config import UserSettings
from .wire import FrameStream


@dataclass(frozen=True, slots=True)
class AuthResult:
    user: UserSettings
    method: str  # "SCRAM-SHA-256" or "SCRAM-SHA-256-PLUS"


class FailureLimiter:
    """Counts authentication failures per key (an IP or a user name) in a sliding window."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] > self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        return any(len(self._recent(key, now)) >= self.max_failures for key in keys)

    def record(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self._recent(key, now)
            self._failures.setdefault(key, deque()).append(now)


class ClientAuthenticator:
    """Runs the SCRAM exchange with one client; shared state is the failure limiter."""

    def __init__(self, users: Mapping[str, UserSettings], limiter: FailureLimiter,
                 failure_delay_s: float) -> None:
        self.users = users
        self.limiter = limiter
        self.failure_delay_s = failure_delay_s
        # Keyed fake verifiers for unknown users must not be predictable across restarts.
        self._unknown_user_secret = secrets.token_bytes(32)

    async def authenticate(self, stream: FrameStream, user_name: str, client_ip: str,
                           channel_binding: bytes | None) -> AuthResult:
        """SCRAM with the client; returns the identity or raises AuthenticationFailed."""
        started = time.monotonic()
        user = self.users.get(user_name)
        try:
            if self.limiter.blocked(f"ip:{client_ip}", f"user:{user_name}"):
                raise AuthenticationFailed(_failure_message(user_name),
                                           detail="too many failed attempts")
            method = await self._scram(stream, user, user_name, channel_binding)
            if user is None:  # unreachable: the fake verifier never matches; stay defensive
                raise AuthenticationFailed(_failure_message(user_name))
        except (ScramError, ScramAuthenticationFailed, ProtocolError) as e:
            self.limiter.record(f"ip:{client_ip}", f"user:{user_name}")
            await self._constant_delay(started)
            raise AuthenticationFailed(_failure_message(user_name)) from e
        except AuthenticationFailed:
            self.limiter.record(f"ip:{client_ip}", f"user:{user_name}")
            await self._constant_delay(started)
            raise
        return AuthResult(user=user, method=method)

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
