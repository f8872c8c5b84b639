"""Getting a person's token: the OAuth 2.0 device authorization grant (RFC 8628) and refresh.

Driven by ``phigate login`` (``gateway/sso/cli.py``). Everything here is blocking (a
command-line run). The token a person hands the gateway is the provider's ID token (its
``aud`` is our client); a cached one is reused while it has ``MIN_REMAINING_S`` left, then
refreshed with the refresh token when the provider gave one, else the device flow runs.
"""

from __future__ import annotations

import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import jwt

from .cache import TokenCache
from .discovery import ProviderError, ProviderMetadata, discover, fetch_json

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_SCOPE = "openid email profile groups offline_access"
DEFAULT_INTERVAL_S = 5.0  # RFC 8628 section 3.2: when the provider names none
SLOW_DOWN_S = 5.0  # RFC 8628 section 3.5: add this on every slow_down
MIN_REMAINING_S = 60.0  # a cached token about to expire is not worth a connection


class LoginFailed(Exception):
    """The person could not be logged in; the message says why."""


@dataclass(frozen=True, slots=True)
class Provider:
    issuer: str
    client_id: str
    context: ssl.SSLContext
    timeout_s: float = 10.0

    @property
    def cache_key(self) -> str:
        return f"{self.issuer} {self.client_id}"

    def metadata(self) -> ProviderMetadata:
        try:
            return discover(self.issuer, self.context, self.timeout_s)
        except ProviderError as e:
            raise LoginFailed(f"cannot reach the identity provider: {e}") from e

    def post(self, url: str | None, form: dict[str, str]) -> dict[str, Any]:
        if url is None:
            raise LoginFailed("the identity provider does not offer the device flow")
        try:
            return fetch_json(url, self.context, self.timeout_s, form)
        except ProviderError as e:
            raise LoginFailed(str(e)) from e


def token_expiry(token: str) -> float:
    """The ``exp`` of a token, read without checking it (the gateway checks it)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return 0.0
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else 0.0


def token_claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def get_token(provider: Provider, cache: TokenCache, scope: str = DEFAULT_SCOPE,
              out: TextIO = sys.stderr, sleep: Callable[[float], None] = time.sleep) -> str:
    """A usable ID token: cached, refreshed, or from a new device-flow login."""
    entry = cache.get(provider.cache_key) or {}
    token = entry.get("id_token")
    if isinstance(token, str) and token_expiry(token) - time.time() > MIN_REMAINING_S:
        return token
    metadata = provider.metadata()
    answer = None
    if isinstance(entry.get("refresh_token"), str):
        answer = _refresh(provider, metadata, entry["refresh_token"])
    if answer is None:
        answer = device_flow(provider, metadata, scope, out, sleep)
    token = answer.get("id_token")
    if not isinstance(token, str):
        raise LoginFailed("the identity provider returned no ID token (is 'openid' in scope?)")
    refresh = answer.get("refresh_token") or entry.get("refresh_token")
    cache.put(provider.cache_key, {"id_token": token, "refresh_token": refresh,
                                   "obtained_at": int(time.time())})
    return token


def _refresh(provider: Provider, metadata: ProviderMetadata, refresh_token: str
             ) -> dict[str, Any] | None:
    answer = provider.post(metadata.token_endpoint, {
        "grant_type": "refresh_token", "client_id": provider.client_id,
        "refresh_token": refresh_token})
    return answer if "id_token" in answer else None  # refused: log in afresh


def device_flow(provider: Provider, metadata: ProviderMetadata, scope: str, out: TextIO,
                sleep: Callable[[float], None]) -> dict[str, Any]:
    started = provider.post(metadata.device_authorization_endpoint,
                            {"client_id": provider.client_id, "scope": scope})
    if "device_code" not in started:
        raise LoginFailed(f"device authorization refused: {_oauth_error(started)}")
    uri = started.get("verification_uri_complete") or started.get("verification_uri")
    print(f"To log in, open {uri}\nand confirm the code {started.get('user_code')}", file=out,
          flush=True)
    interval = float(started.get("interval") or DEFAULT_INTERVAL_S)
    deadline = time.monotonic() + float(started.get("expires_in") or 600)
    while time.monotonic() < deadline:
        sleep(interval)
        answer = provider.post(metadata.token_endpoint, {
            "grant_type": DEVICE_GRANT, "client_id": provider.client_id,
            "device_code": started["device_code"]})
        error = answer.get("error")
        if error is None:
            return answer
        if error == "slow_down":
            interval += SLOW_DOWN_S
        elif error != "authorization_pending":
            raise LoginFailed(f"login refused: {_oauth_error(answer)}")
    raise LoginFailed("the login was not completed in time")


def _oauth_error(answer: dict[str, Any]) -> str:
    description = answer.get("error_description")
    return f"{answer.get('error')}: {description}" if description else str(answer.get("error"))
