"""Who is running ``phigate access …``: the same credentials the gateway accepts.

A single sign-on token (``PGPASSWORD`` as ``phigate login --exec`` sets it, or the
``phigate login`` cache) is validated exactly as the gateway validates it; otherwise the
password of a local identity is checked against its SCRAM verifier by running a SCRAM
exchange in-process, so no password check is written twice.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from dataclasses import dataclass

from protocols.postgres.scram import (
    ScramAuthenticationFailed,
    ScramClient,
    ScramError,
    ScramServer,
    ScramVerifier,
)

from ..settings.config import Settings
from ..sso.authenticator import SsoLogin
from ..sso.cache import TokenCache, default_path
from ..sso.tokens import TokenRejected


class NotAuthenticated(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    groups: frozenset[str]
    method: str  # "oidc" or "password"


def identify(settings: Settings, user: str | None) -> Person:
    secret = _credential(settings, user)
    if settings.sso is not None and secret.count(".") == 2 and (user is None
                                                                 or user not in settings.users):
        return _token_person(settings, secret, user)
    if user is None:
        raise NotAuthenticated("give --user NAME (or log in with `phigate login`)")
    local = settings.users.get(user)
    if local is None or not _password_matches(local.verifier, secret, user):
        raise NotAuthenticated(f'password authentication failed for user "{user}"')
    return Person(user, local.groups, "password")


def _credential(settings: Settings, user: str | None) -> str:
    if os.environ.get("PGPASSWORD"):
        return os.environ["PGPASSWORD"]
    if settings.sso is not None and (user is None or user not in settings.users):
        entry = TokenCache(default_path()).get(f"{settings.sso.issuer} {settings.sso.client_id}")
        if entry and isinstance(entry.get("id_token"), str):
            return str(entry["id_token"])
    if sys.stdin.isatty():
        return getpass.getpass("Password or token: ")
    return sys.stdin.readline().rstrip("\r\n")


def _token_person(settings: Settings, token: str, user: str | None) -> Person:
    assert settings.sso is not None
    try:
        identity = asyncio.run(SsoLogin(settings.sso).validator.validate(token))
    except TokenRejected as e:
        raise NotAuthenticated(f"token refused: {e.reason}") from e
    if user is not None and identity.username != user:
        raise NotAuthenticated(f"the token belongs to {identity.username}, not to {user}")
    return Person(identity.username, identity.groups, "oidc")


def _password_matches(verifier: ScramVerifier, password: str, user: str) -> bool:
    client = ScramClient(password)
    server = ScramServer(verifier, username=user)
    try:
        mechanism = client.choose(server.mechanisms())
        server_first = server.first(mechanism, client.first())
        server.final(client.final(server_first))
    except (ScramAuthenticationFailed, ScramError):
        return False
    return True
