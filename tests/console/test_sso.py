"""Signing in to the console with the organisation's OpenID provider (``console.sso``).

The provider is the real one (npm ``oidc-provider``, ``tests/sso/idp.py``); the console's web
client is registered through its dynamic client registration, with the console's callback
as redirect URI and a client secret the console reads from a file. The person's part is the
provider's own login page, walked by ``idp.Browser``; the console's part is the installed
``phigate console`` over HTTP. Forged ID tokens (another key, issuer, audience, nonce, an
expired one, ``alg: none``) reach the console as the provider's token answer
(``/test/next-id-token``), after a real sign-in at the provider.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.console.conftest import (
    AUDITORS,
    CALLBACK,
    Deployment,
    SsoConsole,
    sso_config,
    start_console,
)
from tests.console.harness import Answer, Client
from tests.e2e.harness import PHIGATE, free_port
from tests.sso import forge
from tests.sso.idp import Browser, IdentityProvider, email


def begin(client: Client, next_path: str | None = None) -> str:
    """The console's redirect to the provider's authorization endpoint."""
    path = "/login/sso" + (f"?next={urllib.parse.quote(next_path)}" if next_path else "")
    answer = client.get(path)
    assert answer.status == 303 and answer.location, answer.text
    return answer.location


def at_provider(idp: IdentityProvider, sso: SsoConsole, authorization_url: str,
                user: str) -> str:
    """The person signs in on the provider's page; the callback path it sends them to."""
    back = Browser(idp.ssl_context, stop_at=sso.redirect_uri).authorize(authorization_url, user)
    parts = urllib.parse.urlsplit(back)
    return f"{parts.path}?{parts.query}"


def sign_in(client: Client, idp: IdentityProvider, sso: SsoConsole, user: str,
            next_path: str | None = None) -> Answer:
    return client.get(at_provider(idp, sso, begin(client, next_path), user))


def query_of(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def with_query(path: str, **changes: str | None) -> str:
    query = {**query_of(path), **changes}
    return CALLBACK + "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v})


def logins(deployment: Deployment, action: str = "console login") -> list[dict[str, Any]]:
    return [a for a in deployment.entries("audit_access") if a["action"] == action]


def assert_refused(client: Client, answer: Answer, status: int, reason: str) -> None:
    assert answer.status == status, answer.text
    assert "Single sign-on did not sign you in" in answer.text and reason in answer.text
    assert "phigate_console" not in client.cookies
    assert "Traceback" not in answer.text
    assert client.get("/dashboard").location == "/login"


# ---------------------------------------------------------------- signing in


def test_the_login_page_offers_the_provider_beside_the_password(sso: SsoConsole) -> None:
    client = Client(sso.console)
    page = client.get("/login?next=/people")
    assert page.status == 200
    assert 'href="/login/sso?next=/people"' in page.text and "Sign in with Clinic SSO" in page.text
    assert client.login("dana", AUDITORS["dana"]).status == 303  # the local sign-in still works


def test_an_auditor_signs_in_through_the_provider(deployment: Deployment, idp: IdentityProvider,
                                                  sso: SsoConsole) -> None:
    client = Client(sso.console)
    authorization_url = begin(client)
    assert authorization_url.startswith(f"{idp.issuer}/")
    asked = query_of(authorization_url)
    assert asked["response_type"] == "code" and asked["client_id"] == sso.client_id
    assert asked["redirect_uri"] == sso.redirect_uri and asked["code_challenge_method"] == "S256"
    assert len(asked["state"]) >= 43 and len(asked["nonce"]) >= 43
    assert len(asked["code_challenge"]) == 43  # BASE64URL(SHA-256): the verifier never leaves
    binding = next(c for c in client.request("GET", "/login/sso").set_cookies
                   if c.startswith("phigate_sso="))
    assert "HttpOnly" in binding and "SameSite=Lax" in binding and "Path=/login/sso" in binding
    answer = client.get(at_provider(idp, sso, authorization_url, "priya"))
    assert answer.status == 200, answer.text
    assert 'http-equiv="refresh" content="0; url=/dashboard"' in answer.text
    cookie = next(c for c in answer.set_cookies if c.startswith("phigate_console="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    dashboard = client.get("/dashboard")
    assert dashboard.status == 200 and email("priya") in dashboard.text
    entry = logins(deployment)[-1]
    assert entry["as"] == email("priya")
    assert entry["sign_in"] == {"method": "oidc", "issuer": idp.issuer,
                                "client_id": sso.client_id, "identity": email("priya"),
                                "subject": "priya", "token_id": entry["sign_in"]["token_id"]}
    views = [a for a in deployment.entries("audit_access") if a["action"] == "console dashboard"]
    assert views[-1]["as"] == email("priya")  # views are journaled under the SSO name


def test_an_auditor_named_by_identity_signs_in(idp: IdentityProvider, sso: SsoConsole) -> None:
    client = Client(sso.console)  # carol@clinic.example: named in auditors, not by group
    assert sign_in(client, idp, sso, "carol").status == 200
    assert email("carol") in client.get("/people").text


def test_a_password_sign_in_is_journaled_with_its_method(deployment: Deployment,
                                                         sso: SsoConsole) -> None:
    assert Client(sso.console).login("dana", AUDITORS["dana"]).status == 303
    entry = logins(deployment)[-1]
    assert entry["as"] == "dana" and entry["sign_in"] == {"method": "password"}


def test_a_person_who_is_not_an_auditor_is_refused_and_journaled(
        deployment: Deployment, idp: IdentityProvider, sso: SsoConsole) -> None:
    client = Client(sso.console)
    assert_refused(client, sign_in(client, idp, sso, "alice"), 403,
                   f"{email('alice')} is not an auditor")
    refused = logins(deployment, "console login refused")[-1]
    assert "as" not in refused
    assert refused["sign_in"]["identity"] == email("alice")
    assert refused["sign_in"]["reason"] == f"{email('alice')} is not an auditor"
    assert refused["sign_in"]["issuer"] == idp.issuer


def test_refused_sso_sign_ins_count_against_the_limits(idp: IdentityProvider,
                                                       sso: SsoConsole) -> None:
    for _ in range(3):  # limits.auth_max_failures for this console
        client = Client(sso.console)
        assert sign_in(client, idp, sso, "bob").status == 403
    client = Client(sso.console)
    answer = sign_in(client, idp, sso, "bob")
    assert answer.status == 429 and "Too many failed sign-ins" in answer.text
    assert "phigate_console" not in client.cookies
    assert sign_in(Client(sso.console), idp, sso, "priya").status == 200  # others unaffected


@pytest.mark.parametrize("target, landing", [
    ("/people", "/people"),
    ("//evil.example/", "/dashboard"),
    ("https://evil.example/", "/dashboard"),
    ("/\\evil.example", "/dashboard"),
    ("/\t/evil.example", "/dashboard"),  # a browser drops the tab: //evil.example
    ("/\n/evil.example", "/dashboard"),
])
def test_next_lands_only_on_a_local_path(idp: IdentityProvider, sso: SsoConsole, target: str,
                                         landing: str) -> None:
    client = Client(sso.console)
    authorization_url = begin(client, target)
    assert authorization_url.startswith(f"{idp.issuer}/") and "evil" not in authorization_url
    answer = client.get(at_provider(idp, sso, authorization_url, "priya"))
    assert f'content="0; url={landing}"' in answer.text and "evil" not in answer.text


# ---------------------------------------------------------------- state, replay, browser binding


def test_a_missing_or_wrong_state_is_refused(deployment: Deployment, idp: IdentityProvider,
                                             sso: SsoConsole) -> None:
    client = Client(sso.console)
    back = at_provider(idp, sso, begin(client), "priya")
    assert_refused(client, client.get(with_query(back, state=None)), 400, "(state)")
    assert_refused(client, client.get(with_query(back, state="A" * 43)), 400, "(state)")
    assert logins(deployment, "console login refused")[-1]["sign_in"]["reason"].endswith(
        "(state)")
    assert client.get(back).status == 200  # the real state still fits: only it was wrong


def test_a_callback_in_another_browser_is_refused(idp: IdentityProvider,
                                                  sso: SsoConsole) -> None:
    victim, attacker = Client(sso.console), Client(sso.console)
    back = at_provider(idp, sso, begin(attacker), "priya")
    assert_refused(victim, victim.get(back), 400, "(state)")  # no binding cookie
    victim.cookies["phigate_sso"] = "B" * 43  # a binding cookie of its own
    assert_refused(victim, victim.get(back), 400, "(state)")
    assert_refused(attacker, attacker.get(back), 400, "(state)")  # used up by the attempt


def test_a_replayed_code_is_refused(idp: IdentityProvider, sso: SsoConsole) -> None:
    client = Client(sso.console)
    back = at_provider(idp, sso, begin(client), "priya")
    assert client.get(back).status == 200
    thief = Client(sso.console)
    thief.cookies = {k: v for k, v in client.cookies.items() if k == "phigate_sso"}
    assert_refused(thief, thief.get(back), 400, "(state)")  # the state is used up
    # The code with a fresh state of the same browser: the provider refuses it (used, and
    # the new sign-in's PKCE verifier does not fit its challenge).
    fresh = query_of(begin(thief))["state"]
    answer = thief.get(with_query(back, state=fresh))
    assert_refused(thief, answer, 401, "invalid_grant")


def test_an_answer_from_the_provider_with_an_error_is_refused(sso: SsoConsole) -> None:
    client = Client(sso.console)
    state = query_of(begin(client))["state"]
    answer = client.get(f"{CALLBACK}?state={state}&error=access_denied")
    assert_refused(client, answer, 401, "access_denied")


# ---------------------------------------------------------------- forged ID tokens


def forged(idp: IdentityProvider, client_id: str, nonce: str, kind: str) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": idp.issuer, "aud": client_id, "sub": "priya", "email": email("priya"),
        "groups": ["compliance"], "iat": now, "exp": now + 300, "nonce": nonce}
    kid = idp.keys.rsa_kid
    if kind == "other key":
        return forge.signed_by_stranger(claims, kid)
    if kind == "alg none":
        return forge.unsigned(claims, kid)
    claims.update({"another nonce": {"nonce": "C" * 43},
                   "another audience": {"aud": "other-app"},
                   "another issuer": {"iss": "https://idp.evil.example"},
                   "expired": {"iat": now - 900, "exp": now - 300}}[kind])
    return forge.signed_with(idp.keys.rsa_key, claims, kid)


@pytest.mark.parametrize("kind, reason", [
    ("another nonce", "token nonce does not match this sign-in"),
    ("other key", "token signature does not verify"),
    ("alg none", "signing algorithm &#39;none&#39; is not allowed"),
    ("another audience", "token is for another audience"),
    ("another issuer", "token from another issuer"),
    ("expired", "token expired"),
])
def test_a_forged_id_token_in_the_token_answer_is_refused(
        deployment: Deployment, idp: IdentityProvider, sso: SsoConsole, kind: str,
        reason: str) -> None:
    client = Client(sso.console)
    authorization_url = begin(client)
    back = at_provider(idp, sso, authorization_url, "priya")
    idp.next_id_token(sso.client_id, forged(idp, sso.client_id,
                                            query_of(authorization_url)["nonce"], kind))
    assert_refused(client, client.get(back), 401, reason)
    refused = logins(deployment, "console login refused")[-1]["sign_in"]
    assert refused["reason"] == reason.replace("&#39;", "'") and "identity" not in refused


def test_a_token_signed_right_for_this_sign_in_gets_in(idp: IdentityProvider,
                                                       sso: SsoConsole) -> None:
    """The forgeries above fail for their one flaw: the same token without it signs in."""
    client = Client(sso.console)
    authorization_url = begin(client)
    back = at_provider(idp, sso, authorization_url, "priya")
    now = int(time.time())
    token = forge.signed_with(idp.keys.rsa_key, {
        "iss": idp.issuer, "aud": sso.client_id, "sub": "priya", "email": email("priya"),
        "groups": ["compliance"], "iat": now, "exp": now + 300,
        "nonce": query_of(authorization_url)["nonce"]}, idp.keys.rsa_kid)
    idp.next_id_token(sso.client_id, token)
    assert client.get(back).status == 200


# ---------------------------------------------------------------- other consoles


def test_a_name_the_provider_shares_with_a_local_identity_is_refused(
        deployment: Deployment, idp: IdentityProvider) -> None:
    """With username_claim preferred_username the provider's carol is "carol", a local
    identity (and an auditor): she signs in with her password, never through the provider."""
    port = free_port()
    redirect_uri = f"http://127.0.0.1:{port}{CALLBACK}"
    client_id, secret = idp.register_web_client(redirect_uri)
    config = sso_config(deployment, idp, port, redirect_uri=redirect_uri, client_id=client_id,
                        client_secret_env="PHIGATE_TEST_CONSOLE_SECRET")
    config["sso"]["username_claim"] = "preferred_username"
    config["console"]["auditors"] = ["compliance", "approvers"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PHIGATE_TEST_CONSOLE_SECRET", secret)  # console.sso.client_secret_env
        console = start_console(deployment, config, port)
    try:
        sso = SsoConsole(console, client_id, redirect_uri)
        client = Client(console)
        assert "Sign in with 127.0.0.1:" in client.get("/login").text  # the issuer's host
        assert_refused(client, sign_in(client, idp, sso, "carol"), 403,
                       "carol is a local identity: sign in with its password")
        assert client.login("carol", AUDITORS["carol"]).status == 303
    finally:
        console.stop()


def test_an_unreachable_provider_is_a_clear_page(deployment: Deployment,
                                                 idp: IdentityProvider) -> None:
    port, dead = free_port(), free_port()
    secret_file = deployment.root / "unused-secret"
    secret_file.write_text("not used\n", encoding="utf-8")
    config = sso_config(deployment, idp, port, client_secret_file=str(secret_file),
                        redirect_uri=f"http://localhost:{port}{CALLBACK}")
    config["sso"]["issuer"] = f"https://127.0.0.1:{dead}"  # nothing listens there
    console = start_console(deployment, config, port)
    try:
        client = Client(console)
        answer = client.get("/login/sso?next=/people")
        assert answer.status == 503 and "cannot be reached right now" in answer.text
        assert 'name="next" value="/people"' in answer.text  # the password form still works
        assert "Traceback" not in answer.text and "Traceback" not in console.log()
        assert client.login("dana", AUDITORS["dana"]).status == 303
    finally:
        console.stop()


def test_without_console_sso_there_is_no_provider_sign_in(deployment: Deployment) -> None:
    client = Client(deployment.console)
    assert "/login/sso" not in client.get("/login").text
    assert client.get("/login/sso").status == 404
    assert client.get(f"{CALLBACK}?state=x&code=y").status == 404


# ---------------------------------------------------------------- the console.sso keys


GOOD_SSO = {"redirect_uri": "https://console.clinic.example/login/sso/callback",
            "client_id": "phigate-console", "client_secret_env": "PHIGATE_CONSOLE_SECRET",
            "provider_name": "Clinic SSO", "scope": "openid email groups"}


def run_console(tmp_path: Path, config: dict[str, Any], *command: str,
                **env: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "phigate.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if k != "PHIGATE_CONSOLE_SECRET"}
    return subprocess.run([str(PHIGATE), *(command or ("console",)), "-c", str(path)],
                          capture_output=True, text=True, timeout=30, env={**environ, **env})


def test_a_complete_console_sso_section_is_accepted(deployment: Deployment,
                                                    idp: IdentityProvider,
                                                    tmp_path: Path) -> None:
    config = sso_config(deployment, idp, free_port(), **GOOD_SSO)
    # check-config reads the gateway's secrets too; the console's is read when it starts.
    ran = run_console(tmp_path, config, "check-config", CLINIC_DB_PASSWORD="unused")
    assert ran.returncode == 0, ran.stderr


@pytest.mark.parametrize("change, message", [
    ({"redirect_uri": "http://console.clinic.example/login/sso/callback"},
     "must be https:// unless the host is a loopback address"),
    ({"redirect_uri": "https://console.clinic.example/callback"},
     "must end in /login/sso/callback"),
    ({"redirect_uri": "https://console.clinic.example/login/sso/callback?x=1"},
     "without query or fragment"),
    ({"redirect_uri": "console.clinic.example/login/sso/callback"}, "absolute https:// URL"),
    ({"client_secret_file": "secret"}, "exactly one of client_secret_file or client_secret_env"),
    ({"client_secret_env": None}, "exactly one of client_secret_file or client_secret_env"),
    ({"scope": "email groups"}, "must include openid"),
    ({"client_secret": "inline"}, "unknown key"),
    ({}, "environment variable PHIGATE_CONSOLE_SECRET is not set"),
    ({"client_secret_env": None, "client_secret_file": "missing-secret"}, "cannot read"),
    ({"client_secret_env": None, "client_secret_file": "empty-secret"}, "is empty"),
])
def test_bad_console_sso_settings_exit_2(deployment: Deployment, idp: IdentityProvider,
                                         tmp_path: Path, change: dict[str, Any],
                                         message: str) -> None:
    (tmp_path / "empty-secret").write_text("\n", encoding="utf-8")
    sso = {k: v for k, v in {**GOOD_SSO, **change}.items() if v is not None}
    ran = run_console(tmp_path, sso_config(deployment, idp, free_port(), **sso))
    assert ran.returncode == 2 and message in ran.stderr, ran.stderr
    assert "console.sso" in ran.stderr and "Traceback" not in ran.stderr


def test_console_sso_needs_the_sso_section(deployment: Deployment, idp: IdentityProvider,
                                          tmp_path: Path) -> None:
    config = sso_config(deployment, idp, free_port(), **GOOD_SSO)
    del config["sso"]
    ran = run_console(tmp_path, config)
    assert ran.returncode == 2 and "console.sso" in ran.stderr
    assert "needs the sso: section" in ran.stderr
