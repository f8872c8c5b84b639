"""Forged tokens for the negative tests: what an attacker would send the gateway.

Made by hand on purpose (the JOSE library refuses to make most of them): ``alg: none``,
HS256 keyed with the provider's public key, and tokens signed by a key the provider never
published.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def unsigned(claims: dict[str, Any], kid: str) -> str:
    header = _b64(json.dumps({"alg": "none", "kid": kid}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def hs256_with_public_key(claims: dict[str, Any], kid: str, public_key: rsa.RSAPublicKey
                          ) -> str:
    """The classic algorithm confusion: HMAC whose secret is the published public key."""
    pem = public_key.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = (_b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
                     + "." + _b64(json.dumps(claims).encode()))
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def signed_by_stranger(claims: dict[str, Any], kid: str) -> str:
    key = rsa.generate_private_key(65537, 2048)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def signed_with(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, claims: dict[str, Any],
                kid: str, algorithm: str = "RS256", typ: str | None = None) -> str:
    """Signed with the provider's own key: the claims checks are all that stand in the way."""
    headers: dict[str, Any] = {"kid": kid, **({"typ": typ} if typ else {})}
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)
