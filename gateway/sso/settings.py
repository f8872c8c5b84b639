"""The ``sso:`` section: which OpenID provider the gateway trusts, and how to read its tokens.

Read by ``gateway/settings/config.py`` at start-up and on SIGHUP; used by the validator
(``gateway/sso/tokens.py``) and the JWKS cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..settings.values import Section

# Asymmetric algorithms only: "none" and HMAC (whose key would be the public key) never.
SUPPORTED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                        "ES256", "ES384", "ES512", "EdDSA")
USERNAME_CLAIMS = ("email", "preferred_username", "upn", "sub")
MAX_LEEWAY_S = 60.0  # clock skew tolerated; more would stretch every token's lifetime


@dataclass(frozen=True, slots=True)
class SsoSettings:
    issuer: str
    client_id: str
    audience: str
    groups_claim: str = "groups"
    username_claim: str = "email"
    allowed_algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway_s: float = 30.0
    ca: Path | None = None
    expiry_grace_s: float = 0.0  # a session outlives its token by this much
    jwks_refresh_floor_s: float = 30.0  # unknown kids refetch the JWKS at most this often
    timeout_s: float = 5.0  # each request to the provider


def parse_sso(section: Section) -> SsoSettings:
    section.only("issuer", "audience", "client_id", "groups_claim", "username_claim",
                 "allowed_algorithms", "leeway", "ca", "expiry_grace", "jwks_refresh_floor",
                 "timeout")
    issuer = section.text("issuer")
    if not issuer.startswith("https://"):
        raise section.error("issuer", "must be an https:// URL (tokens are only as safe "
                                      "as the channel their keys come over)")
    client_id = section.text("client_id")
    leeway = section.duration("leeway", 30.0)
    if leeway > MAX_LEEWAY_S:
        raise section.error("leeway", f"must be at most {MAX_LEEWAY_S:.0f}s")
    return SsoSettings(
        issuer=issuer, client_id=client_id,
        audience=section.text("audience", client_id),
        groups_claim=section.text("groups_claim", "groups"),
        username_claim=section.choice("username_claim", USERNAME_CLAIMS, "email"),
        allowed_algorithms=_algorithms(section),
        leeway_s=leeway,
        ca=section.optional_path("ca"),
        expiry_grace_s=section.duration("expiry_grace", 0.0),
        jwks_refresh_floor_s=section.duration("jwks_refresh_floor", 30.0),
        timeout_s=section.duration("timeout", 5.0),
    )


def _algorithms(section: Section) -> tuple[str, ...]:
    value = section.data.get("allowed_algorithms", ["RS256", "ES256"])
    if not isinstance(value, list) or not value:
        raise section.error("allowed_algorithms", "must be a non-empty list")
    for alg in value:
        if alg not in SUPPORTED_ALGORITHMS:
            raise section.error("allowed_algorithms", f"{alg!r} is not allowed (one of: "
                                f"{', '.join(SUPPORTED_ALGORITHMS)}; never none or HMAC)")
    return tuple(value)
