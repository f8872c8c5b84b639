"""Validating an OpenID Connect token into the person it names.

Driven by ``gateway/sso/authenticator.py`` for every SSO login. The signature check is
PyJWT's; here are only the rules around it: the algorithm allow-list (asymmetric only,
so never ``none`` and never HMAC keyed with a public key), a ``kid`` the provider
publishes, a key whose type fits the algorithm, exact ``iss``, a single ``aud`` equal to
ours (``strict_aud``), ``exp``/``nbf``/``iat`` within the leeway, and the claims we need.
A sign-in that sent a ``nonce`` (the console's) also needs the token to carry it back.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import jwt

from .jwks import JwksCache, SigningKey
from .settings import SsoSettings

MAX_TOKEN_BYTES = 64 * 1024  # PostgreSQL's own limit on a password packet
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
# Header typ values of ID tokens and JWT access tokens (RFC 9068); anything else (logout
# tokens, DPoP proofs, ...) is some other kind of JWT and never a login.
ACCEPTED_TYPES = frozenset({None, "JWT", "jwt", "at+jwt", "application/at+jwt"})
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


class TokenRejected(Exception):
    """The token does not log anyone in; ``reason`` is for the journal and the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TokenIdentity:
    username: str
    subject: str
    groups: frozenset[str]
    issuer: str
    expires_at: float
    token_id: str  # the token's jti, or "sha256:<hex>" of the token: never the token


class TokenValidator:
    def __init__(self, settings: SsoSettings, keys: JwksCache) -> None:
        self.settings = settings
        self.keys = keys

    async def validate(self, token: str, *, nonce: str | None = None) -> TokenIdentity:
        """The person ``token`` names; with ``nonce``, only a token minted for that sign-in."""
        if len(token.encode()) > MAX_TOKEN_BYTES:
            raise TokenRejected("token longer than 64 KiB")
        header = _header(token)
        alg = header.get("alg")
        if alg not in self.settings.allowed_algorithms:
            raise TokenRejected(f"signing algorithm {alg!r} is not allowed")
        if header.get("typ") not in ACCEPTED_TYPES:
            raise TokenRejected(f"token type {header.get('typ')!r} is not a login token")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("token names no signing key (kid)")
        key = await self.keys.key(kid)
        if key is None:
            raise TokenRejected(f"signing key {kid!r} is not published by the provider")
        _check_key_fits(key, alg)
        claims = self._verified_claims(token, key, alg)
        if nonce is not None:
            _check_nonce(claims, nonce)
        return self._identity(token, claims)

    def _verified_claims(self, token: str, key: SigningKey, alg: str) -> dict[str, object]:
        s = self.settings
        try:
            return jwt.decode(token, key.key.key, algorithms=[alg], audience=s.audience,
                              issuer=s.issuer, leeway=s.leeway_s,
                              options={"require": REQUIRED_CLAIMS, "strict_aud": True,
                                       "verify_iat": True})
        except jwt.ExpiredSignatureError as e:
            raise TokenRejected("token expired") from e
        except jwt.ImmatureSignatureError as e:
            raise TokenRejected("token not yet valid") from e
        except jwt.InvalidAudienceError as e:
            raise TokenRejected("token is for another audience") from e
        except jwt.InvalidIssuerError as e:
            raise TokenRejected("token from another issuer") from e
        except jwt.MissingRequiredClaimError as e:
            raise TokenRejected(f"token lacks the {e.claim} claim") from e
        except jwt.InvalidSignatureError as e:
            raise TokenRejected("token signature does not verify") from e
        except jwt.InvalidTokenError as e:
            raise TokenRejected(f"invalid token: {type(e).__name__}") from e

    def _identity(self, token: str, claims: dict[str, object]) -> TokenIdentity:
        s = self.settings
        username = claims.get(s.username_claim)
        if not isinstance(username, str) or not username:
            raise TokenRejected(f"token has no {s.username_claim} claim")
        jti = claims.get("jti")
        token_id = jti if isinstance(jti, str) and jti else (
            "sha256:" + hashlib.sha256(token.encode()).hexdigest())
        exp = claims["exp"]
        assert isinstance(exp, int | float)  # PyJWT checked it is a number
        return TokenIdentity(username=username, subject=str(claims["sub"]),
                             groups=_groups(claims.get(s.groups_claim), s.groups_claim),
                             issuer=s.issuer, expires_at=float(exp), token_id=token_id)


def _header(token: str) -> dict[str, object]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as e:
        raise TokenRejected("not a signed JWT") from e


def _check_key_fits(key: SigningKey, alg: str) -> None:
    """The key's own type, curve and alg must match the header: no algorithm confusion."""
    jwk = key.jwk
    if jwk.get("kty") != _KEY_TYPES.get(alg[:2]):
        raise TokenRejected(f"key type {jwk.get('kty')!r} does not fit {alg}")
    if "alg" in jwk and jwk["alg"] != alg:
        raise TokenRejected(f"key {key.kid!r} is for {jwk['alg']}, not {alg}")
    if alg in _CURVES and jwk.get("crv") != _CURVES[alg]:
        raise TokenRejected(f"key curve {jwk.get('crv')!r} does not fit {alg}")


def _check_nonce(claims: dict[str, object], nonce: str) -> None:
    """OpenID Connect Core 3.1.3.7 step 11: a token from another sign-in is a replay."""
    given = claims.get("nonce")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), nonce.encode()):
        raise TokenRejected("token nonce does not match this sign-in")


def _groups(value: object, claim: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list) and all(isinstance(g, str) for g in value):
        return frozenset(value)
    raise TokenRejected(f"the {claim} claim is not a list of names")
