"""``phigate login`` end to end: the device flow at the real provider, then psql with the token.

The person's step (open the URL, confirm the code, sign in) is done by a form-following user
agent on the provider's own pages; everything else is the installed ``phigate`` entry point.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.harness import CLINIC_POLICY, GatewayProcess
from tests.sso.conftest import PHIGATE, phigate, token_psql
from tests.sso.forge import claims_of
from tests.sso.idp import Browser, IdentityProvider, email


def login(idp: IdentityProvider, home: Path, *args: str, user: str | None = "alice",
          client_id: str = "phigate", config: GatewayProcess | None = None
          ) -> subprocess.CompletedProcess[str]:
    """Run ``phigate login``; if it asks, sign ``user`` in at the provider's pages.

    With ``config`` the provider comes from that gateway's ``sso:`` section (``-c``)."""
    provider = (["-c", str(config.config_path)] if config else
                ["--issuer", idp.issuer, "--client-id", client_id, "--ca", str(idp.ca)])
    env = {**os.environ, "HOME": str(home), "PGPASSFILE": str(home / "pgpass"),
           "PHIGATE_TOKEN_CACHE": str(home / "tokens.json"), **(config.env if config else {})}
    with subprocess.Popen([PHIGATE, "login", *provider, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env) as process:
        return _complete(process, idp, user)


def _complete(process: subprocess.Popen[str], idp: IdentityProvider, user: str | None
              ) -> subprocess.CompletedProcess[str]:
    assert process.stderr is not None
    prompt = ""
    for line in process.stderr:
        prompt += line
        if match := re.search(r"open (https://\S+)", line):
            assert user is not None, f"unexpected device prompt: {line}"
            Browser(idp.ssl_context).sign_in(match.group(1), user)
            break
    # Read the rest through the same buffered files (communicate() would bypass their buffers).
    assert process.stdout is not None
    stderr, stdout = process.stderr.read(), process.stdout.read()
    process.wait(60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout,
                                       prompt + stderr)


def test_login_exec_psql_then_cached_token_and_pgpass(
        idp: IdentityProvider, sso_gateway: GatewayProcess, tmp_path: Path) -> None:
    psql_args = ("psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(sso_gateway.port), "-d",
                 "clinic", "-c", "SELECT count(*) FROM departments")
    first = login(idp, tmp_path, "--exec", *psql_args, config=sso_gateway)
    assert first.returncode == 0, first.stderr
    assert "confirm the code" in first.stderr and int(first.stdout) > 0
    cache = tmp_path / "tokens.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    # A second login reuses the cached token: no prompt, and the export lines for eval.
    again = login(idp, tmp_path, user=None)
    assert again.returncode == 0, again.stderr
    assert f"export PGUSER={email('alice')}" in again.stdout
    token = re.search(r"export PGPASSWORD=(\S+)", again.stdout)
    assert token is not None and claims_of(token.group(1))["sub"] == "alice"
    # --pgpass writes the line libpq reads, and psql needs nothing else.
    target = f"127.0.0.1:{sso_gateway.port}:clinic"
    written = login(idp, tmp_path, "--pgpass", target, user=None)
    assert written.returncode == 0, written.stderr
    pgpass = tmp_path / "pgpass"
    assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600
    assert pgpass.read_text().startswith(f"{target}:{email('alice')}:")
    result = subprocess.run(
        ["psql", "-X", "-At", "-d", f"host=127.0.0.1 port={sso_gateway.port} dbname=clinic "
         f"user={email('alice')} sslmode=require", "-c", "SELECT 1"],
        capture_output=True, text=True, timeout=30,
        env={**os.environ, "PGPASSFILE": str(pgpass)})
    assert result.returncode == 0 and result.stdout.strip() == "1", result.stderr


def test_login_refreshes_with_the_refresh_token(idp: IdentityProvider, tmp_path: Path) -> None:
    first = login(idp, tmp_path, client_id="phigate-short")  # ID tokens live 4 s
    assert first.returncode == 0, first.stderr
    tokens_before = idp.stats()["token"]
    time.sleep(1.1)  # a new iat, so the refreshed token differs
    second = login(idp, tmp_path, user=None, client_id="phigate-short")
    assert second.returncode == 0, second.stderr
    assert "confirm the code" not in second.stderr  # refreshed, not a new device login
    assert idp.stats()["token"] == tokens_before + 1
    old = re.search(r"PGPASSWORD=(\S+)", first.stdout)
    new = re.search(r"PGPASSWORD=(\S+)", second.stdout)
    assert old and new
    assert claims_of(new.group(1))["iat"] > claims_of(old.group(1))["iat"]


def test_login_usage_errors(tmp_path: Path) -> None:
    assert phigate("login").returncode == 2
    result = phigate("login", "--issuer", "http://idp.example", "--client-id", "x")
    assert result.returncode == 2 and "https://" in result.stderr
    unreachable = phigate("login", "--issuer", "https://127.0.0.1:1", "--client-id", "x",
                          env={"PHIGATE_TOKEN_CACHE": str(tmp_path / "t.json")})
    assert unreachable.returncode == 1 and "cannot reach the identity provider" in \
        unreachable.stderr


GROUP_POLICY = CLINIC_POLICY  # clinicians may read PHI; engineers may not touch it


def test_groups_from_the_token_decide_policy(idp: IdentityProvider,
                                             start_sso_gateway: Callable[..., GatewayProcess]
                                             ) -> None:
    gateway = start_sso_gateway({"policies": [str(GROUP_POLICY)]})
    sql = "SELECT mrn FROM patients WHERE id = 7"
    alice = token_psql(gateway, email("alice"), idp.id_token("alice"), sql)
    assert alice.returncode == 0, alice.stderr
    bob = token_psql(gateway, email("bob"), idp.id_token("bob"), sql)
    assert bob.returncode != 0 and "engineers-no-phi" in bob.stderr, bob.stderr


def test_key_rotation_at_the_provider(idp: IdentityProvider,
                                      start_sso_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_sso_gateway(jwks_refresh_floor="1s")
    old = idp.id_token("alice")
    assert token_psql(gateway, email("alice"), old).returncode == 0
    idp.rotate_keys()
    time.sleep(1.1)
    new = idp.id_token("alice")
    assert claims_of(new)["sub"] == "alice"
    result = token_psql(gateway, email("alice"), new)
    assert result.returncode == 0, result.stderr  # the new kid made the gateway refetch
    stale = token_psql(gateway, email("alice"), old)
    assert stale.returncode != 0 and "is not published" in stale.stderr, stale.stderr
