"""``phigate login``: a person gets a token from the IdP and hands it to psql.

Registered by ``gateway/cli.py``. The token goes where libpq looks for a password:
``--exec psql …`` runs the command with ``PGPASSWORD`` (and ``PGUSER``, ``PGSSLMODE=require``
unless set), ``--pgpass HOST:PORT:DB`` writes a ``~/.pgpass`` line, and without either the
``export`` lines are printed for ``eval``. Never a pasted password: psql's prompt cuts what
is typed at 4,095 bytes and ID tokens are often longer.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from ..settings.config import load_config
from .cache import TokenCache, default_path, write_private
from .discovery import tls_context
from .login import DEFAULT_SCOPE, LoginFailed, Provider, get_token, token_claims
from .settings import USERNAME_CLAIMS

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    login = commands.add_parser("login", help="log in with the identity provider "
                                              "(device flow) and hand the token to psql")
    login.add_argument("-c", "--config", help="take issuer, client_id and ca from this "
                                              "phigate.yaml's sso section")
    login.add_argument("--issuer", help="the OpenID provider (https://…)")
    login.add_argument("--client-id", help="the OAuth client registered for PHIGate")
    login.add_argument("--ca", help="CA bundle for the provider's TLS")
    login.add_argument("--scope", default=DEFAULT_SCOPE)
    login.add_argument("--username-claim", choices=USERNAME_CLAIMS, default=None,
                       help="claim that names you at the gateway (default: email)")
    login.add_argument("--cache", type=Path, help="token cache file (default "
                                                  "~/.cache/phigate/tokens.json)")
    login.add_argument("--pgpass", metavar="HOST:PORT:DATABASE",
                       help="write the token into ~/.pgpass (or $PGPASSFILE) for this target")
    login.add_argument("--exec", nargs=argparse.REMAINDER, dest="command", metavar="COMMAND",
                       help="run COMMAND (e.g. psql …) with the token in PGPASSWORD")
    login.set_defaults(func=cmd_login)


def cmd_login(args: argparse.Namespace) -> int:
    issuer, client_id, ca, claim = args.issuer, args.client_id, args.ca, args.username_claim
    if args.config:
        sso = load_config(args.config).sso
        if sso is None:
            print(f"phigate: {args.config} has no sso section", file=sys.stderr)
            return EXIT_USAGE
        issuer, client_id = issuer or sso.issuer, client_id or sso.client_id
        ca, claim = ca or (str(sso.ca) if sso.ca else None), claim or sso.username_claim
    if not issuer or not client_id:
        print("phigate: login needs --issuer and --client-id (or -c CONFIG)", file=sys.stderr)
        return EXIT_USAGE
    if not issuer.startswith("https://"):
        print("phigate: the issuer must be an https:// URL", file=sys.stderr)
        return EXIT_USAGE
    provider = Provider(issuer, client_id, tls_context(Path(ca) if ca else None))
    try:
        token = get_token(provider, TokenCache(args.cache or default_path()), args.scope)
    except LoginFailed as e:
        print(f"phigate: {e}", file=sys.stderr)
        return EXIT_FAILED
    user = str(token_claims(token).get(claim or "email", ""))
    if args.command:
        return _exec(args.command, token, user)
    if args.pgpass:
        return _write_pgpass(args.pgpass, user, token)
    for name, value in (("PGUSER", user), ("PGPASSWORD", token), ("PGSSLMODE", "require")):
        print(f"export {name}={shlex.quote(value)}")
    return EXIT_OK


def _exec(command: list[str], token: str, user: str) -> int:
    env = {**os.environ, "PGPASSWORD": token}
    env.setdefault("PGUSER", user)
    env.setdefault("PGSSLMODE", "require")  # the gateway takes tokens only over TLS
    try:
        os.execvpe(command[0], command, env)
    except OSError as e:
        print(f"phigate: cannot run {command[0]}: {e.strerror}", file=sys.stderr)
        return EXIT_FAILED


def _write_pgpass(target: str, user: str, token: str) -> int:
    parts = target.split(":")
    if len(parts) != 3 or not all(parts):
        print("phigate: --pgpass wants HOST:PORT:DATABASE", file=sys.stderr)
        return EXIT_USAGE
    path = Path(os.environ.get("PGPASSFILE") or Path.home() / ".pgpass")
    prefix = ":".join([*parts, _pgpass_escape(user)]) + ":"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    kept = [line for line in lines if not line.startswith(prefix)]
    write_private(path, "\n".join([*kept, prefix + _pgpass_escape(token)]) + "\n")
    print(f"phigate: token for {user} written to {path}", file=sys.stderr)
    return EXIT_OK


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")
