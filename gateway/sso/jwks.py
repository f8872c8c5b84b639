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
from collections.abc import Callable

from jwt import PyJWK, PyJWKClient, PyJWKSet
from jwt.exceptions import PyJWKClientError, PyJWKSetError

from .discovery import ProviderError

log = logging.getLogger("phigate.sso")

MAX_AGE_S = 3600.0


class JwksCache:
    """kid → key for one provider; ``fetch`` is blocking and returns the whole set."""

    def __init__(self, fetch: Callable[[], PyJWKSet], floor_s: float,
                 max_age_s: float = MAX_AGE_S) -> None:
        self._fetch = fetch
        self.floor_s = floor_s
        self.max_age_s = max_age_s
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None  # monotonic time of the last attempt
        self._lock = asyncio.Lock()
        self.fetches = 0

    @classmethod
    def for_client(cls, client: PyJWKClient, floor_s: float) -> JwksCache:
        return cls(lambda: client.get_jwk_set(refresh=True), floor_s)

    async def key(self, kid: str) -> PyJWK | None:
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
        self.fetches += 1
        try:
            key_set = await asyncio.to_thread(self._fetch)
        except (PyJWKClientError, PyJWKSetError, ProviderError, OSError) as e:
            log.warning("cannot fetch the identity provider's keys: %s", e)
            return  # keep the keys we had: the IdP being down must not log everyone out
        self._keys = {k.key_id: k for k in key_set.keys if k.key_id}
        log.info("identity provider keys loaded", extra={"kids": sorted(self._keys)})
