"""Signing auditors in with the organisation's OpenID provider (``console.sso``).

The authorization code flow with PKCE (S256), ``state`` and ``nonce`` (OpenID Connect Core
3.1): :meth:`SignOn.begin` makes a pending sign-in and the provider's authorization URL;
:meth:`SignOn.finish` exchanges the code the provider sent back at its token endpoint
(``client_secret_basic``) and validates the ID token with the gateway's own validator
(``gateway/sso``: published keys, allowed algorithms, exact ``iss``, ``aud`` our client,
``exp``/``nbf``/``iat`` within the leeway, the username and groups claims) plus the nonce.

Pending sign-ins live in memory: single use, bound to the browser that began them (the hash
of a cookie it holds, so nobody can make a victim's browser finish their own sign-in),
forgotten after :data:`PENDING_TTL_S` and bounded in number. Driven by ``signon_routes``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
import urllib.parse
from dataclasses import dataclass, replace
from typing import Any

from ..settings.values import Secret
from ..sso.authenticator import SsoLogin
from ..sso.discovery import ProviderError, ProviderMetadata, fetch_json
from ..sso.settings import SsoSettings
from ..sso.tokens import TokenIdentity, TokenRejected
from .settings import ConsoleSso

METHOD = "oidc"
PENDING_TTL_S = 600.0  # time a person has at the provider's login page
MAX_PENDING = 10_000  # sign-ins begun and not finished (bounded memory under a flood)
SECRET_BYTES = 32  # state, nonce, PKCE verifier (43 characters, RFC 7636's minimum)


class SignOnUnavailable(Exception):
    """The provider cannot be reached, or does not offer what the flow needs."""


class SignOnRefused(Exception):
    """The provider's answer signs nobody in; ``reason`` is for the page and the journal."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Pending:
    binding: str  # SHA-256 of the browser's binding cookie
    verifier: str  # PKCE code_verifier
    nonce: str
    next: str  # the local path to land on ("" for the dashboard)
    created: float


class PendingSignIns:
    def __init__(self, ttl_s: float = PENDING_TTL_S, limit: int = MAX_PENDING) -> None:
        self._ttl_s = ttl_s
        self._limit = limit
        self._by_state: dict[str, Pending] = {}  # SHA-256 of the state → the sign-in

    def add(self, binding: str, next_path: str) -> tuple[str, Pending]:
        """A new sign-in for this browser: (state, what it needs to finish)."""
        now = time.monotonic()
        self._expire(now)
        if len(self._by_state) >= self._limit:
            del self._by_state[next(iter(self._by_state))]  # the oldest gives way
        state = secrets.token_urlsafe(SECRET_BYTES)
        pending = Pending(binding, secrets.token_urlsafe(SECRET_BYTES),
                          secrets.token_urlsafe(SECRET_BYTES), next_path, now)
        self._by_state[digest(state)] = pending
        return state, pending

    def take(self, state: str, binding: str | None) -> Pending | None:
        """The sign-in ``state`` names, once, and only in the browser that began it."""
        if not state:
            return None
        pending = self._by_state.pop(digest(state), None)
        if pending is None or binding is None or time.monotonic() - pending.created > self._ttl_s:
            return None
        return pending if hmac.compare_digest(pending.binding, binding) else None

    def _expire(self, now: float) -> None:
        for key in [k for k, p in self._by_state.items() if now - p.created > self._ttl_s]:
            del self._by_state[key]


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def code_challenge(verifier: str) -> str:
    """RFC 7636 section 4.2: BASE64URL(SHA256(verifier)), unpadded."""
    hashed = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(hashed).rstrip(b"=").decode("ascii")


class SignOn:
    """One console's client at the ``sso:`` provider."""

    def __init__(self, sso: SsoSettings, config: ConsoleSso, secret: Secret) -> None:
        self.client_id = config.client_id or sso.client_id
        self.issuer = sso.issuer
        self.config = config
        self._secret = secret
        # ID tokens carry our client as their aud, whatever sso.audience says for psql.
        self._provider = SsoLogin(replace(sso, client_id=self.client_id,
                                          audience=self.client_id))
        self.pending = PendingSignIns()

    @property
    def label(self) -> str:
        return self.config.provider_name or urllib.parse.urlsplit(self.issuer).netloc

    async def begin(self, binding: str, next_path: str) -> str:
        """The provider's authorization URL for a new sign-in; raises SignOnUnavailable."""
        metadata = await self._metadata()
        endpoint = metadata.authorization_endpoint
        if endpoint is None:
            raise SignOnUnavailable("the provider publishes no https authorization_endpoint")
        methods = metadata.code_challenge_methods
        if methods is not None and "S256" not in methods:
            raise SignOnUnavailable("the provider does not offer PKCE with S256")
        state, pending = self.pending.add(binding, next_path)
        query = urllib.parse.urlencode({
            "response_type": "code", "client_id": self.client_id,
            "redirect_uri": self.config.redirect_uri, "scope": self.config.scope,
            "state": state, "nonce": pending.nonce,
            "code_challenge": code_challenge(pending.verifier), "code_challenge_method": "S256"})
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    async def finish(self, pending: Pending, code: str) -> TokenIdentity:
        """The person the code's ID token names; raises SignOnRefused or SignOnUnavailable."""
        metadata = await self._metadata()
        if metadata.token_endpoint is None:
            raise SignOnUnavailable("the provider publishes no https token_endpoint")
        answer = await asyncio.to_thread(self._exchange, metadata.token_endpoint, code,
                                         pending.verifier)
        if "error" in answer:
            raise SignOnRefused(f"the provider refused the code ({_oauth_error(answer)})")
        token = answer.get("id_token")
        if not isinstance(token, str):
            raise SignOnRefused("the provider's answer carries no ID token")
        try:
            return await self._provider.validator.validate(token, nonce=pending.nonce)
        except TokenRejected as e:
            raise SignOnRefused(e.reason) from e

    async def _metadata(self) -> ProviderMetadata:
        try:
            return await asyncio.to_thread(self._provider.metadata)
        except ProviderError as e:
            raise SignOnUnavailable(str(e)) from e

    def _exchange(self, url: str, code: str, verifier: str) -> dict[str, Any]:
        """Blocking: the token request (RFC 6749 4.1.3) with the PKCE verifier."""
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": self.config.redirect_uri, "code_verifier": verifier}
        try:
            return fetch_json(url, self._provider.tls, self._provider.settings.timeout_s,
                              form, headers={"Authorization": self._basic_auth()})
        except ProviderError as e:
            raise SignOnUnavailable(str(e)) from e

    def _basic_auth(self) -> str:
        """RFC 6749 2.3.1: id and secret form-encoded, then HTTP Basic."""
        pair = (f"{urllib.parse.quote_plus(self.client_id)}:"
                f"{urllib.parse.quote_plus(self._secret.value)}")
        return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def _oauth_error(answer: dict[str, Any]) -> str:
    error, description = str(answer.get("error")), answer.get("error_description")
    return f"{error}: {description}" if isinstance(description, str) else error
