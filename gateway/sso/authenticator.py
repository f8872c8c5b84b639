"""The SSO login the assembly hands the proxy core (``gateway/proxy/auth.PasswordLogin``).

Built by ``gateway/service.py`` when the config has an ``sso:`` section. The provider is
discovered lazily, on the first token login, so the gateway starts (and local SCRAM
identities work, as break-glass) while the IdP is down. A token logs in only the person
it names: the start-up user must equal the token's ``username_claim``. The console's sign-in
(``gateway/console/signon.py``) uses one too, for its validator and the provider's metadata.
"""

from __future__ import annotations

import ssl
from typing import Any

from jwt import PyJWKClient

from ..proxy.auth import AuthResult, ExternalLoginFailed
from .discovery import ProviderError, ProviderMetadata, discover, tls_context
from .jwks import JwksCache
from .settings import SsoSettings
from .tokens import TokenIdentity, TokenRejected, TokenValidator

METHOD = "oidc"


class SsoLogin:
    """Validates an OpenID Connect token sent as the password."""

    method = METHOD

    def __init__(self, settings: SsoSettings) -> None:
        self.settings = settings
        self._context = tls_context(settings.ca)
        self._client: PyJWKClient | None = None
        self._metadata: ProviderMetadata | None = None
        self.keys = JwksCache(self._fetch_keys, settings.jwks_refresh_floor_s)
        self.validator = TokenValidator(settings, self.keys)

    @property
    def tls(self) -> ssl.SSLContext:
        return self._context

    def metadata(self) -> ProviderMetadata:
        """Blocking: the provider's metadata, discovered on first use; raises ProviderError."""
        if self._metadata is None:
            self._metadata = discover(self.settings.issuer, self._context,
                                      self.settings.timeout_s)
        return self._metadata

    def _fetch_keys(self) -> dict[str, Any]:
        """Blocking (JwksCache runs it in a thread, one at a time): discover, then fetch."""
        if self._client is None:
            self._client = PyJWKClient(self.metadata().jwks_uri, cache_jwk_set=False,
                                       timeout=self.settings.timeout_s,
                                       ssl_context=self._context)
        document = self._client.fetch_data()
        if not isinstance(document, dict):
            raise ProviderError("the provider's JWKS is not a JSON object")
        return document

    async def verify(self, user_name: str, password: str) -> AuthResult:
        try:
            identity = await self.validator.validate(password)
        except TokenRejected as e:
            hint = "get a fresh token with `phigate login`" if "expired" in e.reason else None
            raise self._failed(user_name, e.reason, hint=hint) from e
        if identity.username != user_name:  # one person's token never logs in another
            raise self._failed(user_name, f"the token belongs to {identity.username}, not to "
                                          f"{user_name}", identity)
        s = self.settings
        return AuthResult(name=user_name, groups=identity.groups, method=METHOD,
                          ends_at=identity.expires_at + s.leeway_s + s.expiry_grace_s,
                          details=_details(s.issuer, identity))

    def _failed(self, user_name: str, reason: str, identity: TokenIdentity | None = None,
                hint: str | None = None) -> ExternalLoginFailed:
        return ExternalLoginFailed(f'token authentication failed for user "{user_name}"',
                                   method=METHOD, detail=reason, hint=hint,
                                   details=_details(self.settings.issuer, identity))


def _details(issuer: str, identity: TokenIdentity | None) -> dict[str, str]:
    if identity is None:
        return {"issuer": issuer}
    return {"issuer": issuer, "subject": identity.subject, "token_id": identity.token_id,
            "expires_at": str(int(identity.expires_at))}
