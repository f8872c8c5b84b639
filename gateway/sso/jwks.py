"""The provider's signing keys, cached, refreshed on an unknown ``kid`` with a floor.

Driven by ``gateway/sso/tokens.py`` for every token. Fetching is PyJWT's ``PyJWKClient``
(blocking urllib), so it runs in a thread, never on the event loop. An unknown ``kid``
(the IdP rotated its keys) refetches the set, but at most once per ``floor_s``: a flood of
tokens with made-up kids cannot make the gateway hammer the IdP. A set older than
``max_age_s`` is refetched on next use, so keys the IdP withdrew stop being trusted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jwt import PyJWK
from jwt.exceptions import InvalidKeyError, PyJWKClientError, PyJWKError, PyJWKSetError

from .discovery import ProviderError

log = logging.getLogger("phigate.sso")

MAX_AGE_S = 3600.0


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One published key: as the provider wrote it (kty, crv, alg) and ready for PyJWT."""

    kid: str
    jwk: Mapping[str, Any]
    key: PyJWK


class JwksCache:
    """kid → key for one provider; ``fetch`` is blocking and returns the JWKS document."""

    def __init__(self, fetch: Callable[[], dict[str, Any]], floor_s: float,
                 max_age_s: float = MAX_AGE_S) -> None:
        self._fetch = fetch
        self.floor_s = floor_s
        self.max_age_s = max_age_s
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None  # monotonic time of the last attempt
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> SigningKey | None:
        """The key named ``kid``; None if the provider does not (or may not yet) know it."""
        if kid in self._keys and not self._stale():
            return self._keys[kid]
        async with self._lock:  # concurrent logins with a new kid share one fetch
            if kid not in self._keys or self._stale():
                if self._may_fetch():
                    await self._refresh()
            return self._keys.get(kid)

    def _stale(self) -> bool:
        return self._fetched_at is not None and time.monotonic() - self._fetched_at > self.max_age_s

    def _may_fetch(self) -> bool:
        return self._fetched_at is None or time.monotonic() - self._fetched_at >= self.floor_s

    async def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            document = await asyncio.to_thread(self._fetch)
        except (PyJWKClientError, PyJWKSetError, ProviderError, OSError) as e:
            log.warning("cannot fetch the identity provider's keys: %s", e)
            return  # keep the keys we had: the IdP being down must not log everyone out
        self._keys = _signing_keys(document)
        log.info("identity provider keys loaded", extra={"kids": sorted(self._keys)})


def _signing_keys(document: Mapping[str, Any]) -> dict[str, SigningKey]:
    """Usable signature keys with a kid; others (encryption keys, unknown types) are skipped."""
    found: dict[str, SigningKey] = {}
    keys = document.get("keys")
    for jwk in keys if isinstance(keys, list) else ():
        kid = jwk.get("kid") if isinstance(jwk, dict) else None
        if not isinstance(kid, str) or not kid or jwk.get("use", "sig") != "sig":
            continue
        try:
            found[kid] = SigningKey(kid, dict(jwk), PyJWK(jwk))
        except (PyJWKError, InvalidKeyError, ValueError, TypeError) as e:  # bad key material
            log.info("skipping the provider's key %s: %s", kid, e)
    return found
