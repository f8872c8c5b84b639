"""Logging in through the gateway with an OpenID Connect token, and every way that must fail.

Real psql and asyncpg over TLS against ``phigate serve``, tokens from the real
oidc-provider (tests/sso/idp), forged tokens for the attacks.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import pytest

from tests.e2e.harness import GatewayProcess, psql
from tests.sso.conftest import phigate, token_psql
from tests.sso.forge import (
    claims_of,
    hs256_with_public_key,
    signed_by_stranger,
    signed_with,
    unsigned,
)
from tests.sso.idp import IdentityProvider, email


def journal(gateway: GatewayProcess, kind: str) -> list[dict[str, object]]:
    result = phigate("journal", "show", str(gateway.journal_dir), "--json")
    assert result.returncode == 0, result.stderr
    return [e for e in map(json.loads, result.stdout.splitlines()) if e.get("type") == kind]


def auth_entries(gateway: GatewayProcess, user: str) -> list[dict[str, object]]:
    time.sleep(0.3)  # auth entries are appended asynchronously
    return [e for e in journal(gateway, "auth") if e.get("user") == user]


def _no_verify() -> ssl.SSLContext:
    """sslmode=require: encrypted, the gateway's self-signed certificate not checked."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def refused(result: subprocess.CompletedProcess[str], reason: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "token authentication failed" in result.stderr, result.stderr
    assert reason in result.stderr, result.stderr


def test_psql_logs_in_with_a_token_over_tls(idp: IdentityProvider,
                                            sso_gateway: GatewayProcess) -> None:
    token = idp.id_token("alice")
    result = token_psql(sso_gateway, email("alice"), token, "SELECT count(*) FROM departments")
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 0
    entry = auth_entries(sso_gateway, email("alice"))[-1]
    assert entry["success"] is True and entry["method"] == "oidc"
    assert entry["issuer"] == idp.issuer and entry["subject"] == "alice"
    assert str(entry["token_id"]).startswith("sha256:")
    starts = [e for e in journal(sso_gateway, "session_start")
              if e.get("identity") == email("alice")]
    assert starts and starts[-1]["groups"] == ["clinicians"]
    for path in sso_gateway.journal_dir.rglob("*"):  # the token itself is never journaled
        if path.is_file():
            assert token.split(".")[2].encode() not in path.read_bytes()


def test_plaintext_token_login_is_refused(idp: IdentityProvider,
                                          sso_gateway: GatewayProcess) -> None:
    result = token_psql(sso_gateway, email("alice"), idp.id_token("alice"), sslmode="disable")
    assert result.returncode != 0
    assert "accepted only over TLS" in result.stderr, result.stderr
    assert auth_entries(sso_gateway, email("alice"))[-1]["failure"] == \
        "token login without TLS refused"


def test_local_scram_identities_keep_working(sso_gateway: GatewayProcess) -> None:
    result = psql(sso_gateway, "SELECT 1", user="alice")
    assert result.returncode == 0, result.stderr
    assert auth_entries(sso_gateway, "alice")[-1]["method"].startswith("SCRAM-SHA-256")


def test_one_persons_token_never_logs_in_another(idp: IdentityProvider,
                                                 sso_gateway: GatewayProcess) -> None:
    refused(token_psql(sso_gateway, email("bob"), idp.id_token("alice")),
            "the token belongs to alice@clinic.example, not to bob@")


def test_token_for_another_audience_is_refused(idp: IdentityProvider,
                                               sso_gateway: GatewayProcess) -> None:
    refused(token_psql(sso_gateway, email("alice"), idp.id_token("alice", "other-app")),
            "another audience")


async def test_expired_token_refused_and_session_ended_at_expiry(
        idp: IdentityProvider, start_sso_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_sso_gateway(client_id="phigate-short", expiry_grace="1s")
    token = idp.id_token("alice", "phigate-short")
    conn = await asyncpg.connect(host="127.0.0.1", port=gateway.port, user=email("alice"),
                                 password=token, database="clinic", ssl=_no_verify())
    assert await conn.fetchval("SELECT 1") == 1
    time.sleep(max(0.0, claims_of(token)["exp"] - time.time()) + 0.3)
    assert await conn.fetchval("SELECT 2") == 2  # expired, but within expiry_grace
    time.sleep(1.2)
    # The gateway sent its FATAL when the token expired; asyncpg reports it on next use.
    with pytest.raises(asyncpg.ConnectionDoesNotExistError, match="login expired"):
        await conn.fetchval("SELECT 1")
    await conn.close()
    ends = journal(gateway, "session_end")
    assert ends[-1]["end"] == "credential_expired"
    refused(token_psql(gateway, email("alice"), token), "token expired")


def test_alg_none_is_refused(idp: IdentityProvider, sso_gateway: GatewayProcess) -> None:
    claims = claims_of(idp.id_token("alice"))
    refused(token_psql(sso_gateway, email("alice"), unsigned(claims, idp.keys.rsa_kid)),
            "'none' is not allowed")


def test_hs256_keyed_with_the_public_key_is_refused(idp: IdentityProvider,
                                                    sso_gateway: GatewayProcess) -> None:
    claims = claims_of(idp.id_token("alice"))
    token = hs256_with_public_key(claims, idp.keys.rsa_kid, idp.keys.rsa_key.public_key())
    refused(token_psql(sso_gateway, email("alice"), token), "'HS256' is not allowed")


def test_tampered_claims_fail_the_signature(idp: IdentityProvider,
                                            sso_gateway: GatewayProcess) -> None:
    header, _, signature = idp.id_token("bob").split(".")
    claims = {**claims_of(idp.id_token("bob")), "groups": ["clinicians"]}
    body = unsigned(claims, "x").split(".")[1]
    refused(token_psql(sso_gateway, email("bob"), f"{header}.{body}.{signature}"),
            "signature does not verify")


def test_unknown_kid_refreshes_the_keys_once(idp: IdentityProvider,
                                             sso_gateway: GatewayProcess) -> None:
    claims = claims_of(idp.id_token("alice"))
    assert token_psql(sso_gateway, email("alice"), idp.id_token("alice")).returncode == 0
    time.sleep(2.1)  # past the gateway's jwks_refresh_floor
    before = idp.stats()["jwks"]
    for _ in range(3):  # a burst of made-up kids: one refetch, then the floor holds
        refused(token_psql(sso_gateway, email("alice"), signed_by_stranger(claims, "made-up")),
                "'made-up' is not published")
    assert idp.stats()["jwks"] == before + 1


async def test_asyncpg_with_an_es256_token(idp: IdentityProvider,
                                           start_sso_gateway: Callable[..., GatewayProcess]
                                           ) -> None:
    gateway = start_sso_gateway(client_id="phigate-es", allowed_algorithms=["ES256"])
    token = idp.id_token("carol", "phigate-es")
    context = _no_verify()
    conn = await asyncpg.connect(host="127.0.0.1", port=gateway.port, user=email("carol"),
                                 password=token, database="clinic", ssl=context)
    try:
        assert await conn.fetchval("SELECT count(*) FROM departments") > 0
    finally:
        await conn.close()
    rs256 = idp.id_token("carol", "phigate-es".replace("-es", ""))
    with pytest.raises(asyncpg.InvalidPasswordError, match="token authentication failed"):
        await asyncpg.connect(host="127.0.0.1", port=gateway.port, user=email("carol"),
                              password=rs256, database="clinic", ssl=context)


@dataclass(frozen=True)
class _FromNow:
    """A claim time relative to when the test runs."""

    seconds: float


IN_TEN_MINUTES, FIVE_SECONDS_AGO = _FromNow(600), _FromNow(-5)


@pytest.mark.parametrize(("change", "reason"), [
    ({"sub": None}, "lacks the sub claim"),
    ({"iat": None}, "lacks the iat claim"),
    ({"exp": None}, "lacks the exp claim"),
    ({"iss": "https://127.0.0.1:1"}, "another issuer"),
    ({"aud": ["phigate", "other-app"]}, "another audience"),  # strict_aud: exactly one aud
    ({"nbf": IN_TEN_MINUTES}, "not yet valid"),
    ({"iat": IN_TEN_MINUTES}, "not yet valid"),
    ({"exp": FIVE_SECONDS_AGO}, "token expired"),
    ({"email": None}, "has no email claim"),
])
def test_claims_are_checked_even_with_a_valid_signature(
        idp: IdentityProvider, sso_gateway: GatewayProcess, change: dict[str, object],
        reason: str) -> None:
    now = time.time()  # at run time: collection may be more than ten minutes earlier
    change = {k: now + v.seconds if isinstance(v, _FromNow) else v for k, v in change.items()}
    claims = {**claims_of(idp.id_token("alice")), **change}
    claims = {k: v for k, v in claims.items() if v is not None}
    token = signed_with(idp.keys.rsa_key, claims, idp.keys.rsa_kid)
    refused(token_psql(sso_gateway, email("alice"), token), reason)


def test_header_confusions_are_refused(idp: IdentityProvider,
                                       sso_gateway: GatewayProcess) -> None:
    claims = claims_of(idp.id_token("alice"))
    # An ES256 token that names the RSA key: refused before any signature check.
    confused = signed_with(idp.keys.ec_key, claims, idp.keys.rsa_kid, algorithm="ES256")
    refused(token_psql(sso_gateway, email("alice"), confused), "key type 'RSA' does not fit")
    logout = signed_with(idp.keys.rsa_key, claims, idp.keys.rsa_kid, typ="logout+jwt")
    refused(token_psql(sso_gateway, email("alice"), logout), "not a login token")
    refused(token_psql(sso_gateway, email("alice"), "x" * 70_000), "longer than 64 KiB")
    refused(token_psql(sso_gateway, email("alice"), "not-a-jwt"), "not a signed JWT")
    assert "eyJ" not in sso_gateway.log()  # no token (or part of one) in the gateway's log


async def test_preferred_username_and_a_custom_groups_claim(
        idp: IdentityProvider, start_sso_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_sso_gateway(username_claim="preferred_username", groups_claim="groups",
                                timeout="2s")
    result = token_psql(gateway, "carol", idp.id_token("carol"))
    assert result.returncode == 0, result.stderr
    refused(token_psql(gateway, email("carol"), idp.id_token("carol")),
            "belongs to carol, not to carol@clinic.example")
    starts = [e for e in journal(gateway, "session_start") if e.get("identity") == "carol"]
    assert starts[-1]["groups"] == ["approvers", "sre"]
