"""Just-in-time access end to end: request → alert → approve → PHI allowed and journaled with
the grant → revoke → denied in the same session; then a grant that expires mid-session.

Everything through the installed ``phigate`` entry point against ``phigate serve``; bob asks
with his local password, carol approves with her single sign-on token from the real IdP.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.harness import IDENTITIES, GatewayProcess
from tests.sso.conftest import phigate
from tests.sso.idp import IdentityProvider

PHI_SQL = "SELECT mrn FROM patients WHERE id = 7"
POLICY = """
phi_tables: [clinic.public.patients]
rules:
  - name: break-glass
    groups: [engineers]
    allow: [select]
    requires_approval: {approvers: [approvers, oncall], max_duration: 4h}
"""


def access(gateway: GatewayProcess, *args: str, secret: str,
           user: str | None = None) -> tuple[int, str]:
    who = ("--user", user) if user else ()
    result = phigate("access", args[0], "-c", str(gateway.config_path), *who, *args[1:],
                     env={"PGPASSWORD": secret,
                          "CLINIC_DB_PASSWORD": gateway.env["CLINIC_DB_PASSWORD"]})
    return result.returncode, result.stdout + result.stderr


def journal(gateway: GatewayProcess) -> list[dict[str, object]]:
    result = phigate("journal", "show", str(gateway.journal_dir), "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


async def denied(conn: asyncpg.Connection, within_s: float) -> float:
    """Seconds until the PHI statement is refused (42501), polling the same session."""
    started = time.monotonic()
    while True:
        try:
            await conn.fetchval(PHI_SQL)
        except asyncpg.InsufficientPrivilegeError as e:
            assert "approved access request" in str(e)
            return time.monotonic() - started
        assert time.monotonic() - started < within_s, "still allowed"
        await asyncio.sleep(0.05)


async def allowed(conn: asyncpg.Connection, within_s: float = 5.0) -> None:
    """Wait until the PHI statement runs (the gateway polls the store)."""
    started = time.monotonic()
    while True:
        try:
            await conn.fetchval(PHI_SQL)
            return
        except asyncpg.InsufficientPrivilegeError:
            assert time.monotonic() - started < within_s, "still denied"
            await asyncio.sleep(0.05)


@pytest.fixture
def gateway(start_sso_gateway: Callable[..., GatewayProcess], tmp_path: Path,
            request: pytest.FixtureRequest) -> GatewayProcess:
    policy = tmp_path / "break-glass.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    access = getattr(request, "param", None)  # an access: section, or the defaults
    return start_sso_gateway({
        **({"access": access} if access else {}),
        "policies": [str(policy)],
        "alerts": {"sinks": {"ops-log": {"type": "log"}},
                   "rules": [{"name": "access", "when": "access_request",
                              "sinks": ["ops-log"]}]}})


async def test_request_approve_revoke_and_expiry(idp: IdentityProvider,
                                                 gateway: GatewayProcess) -> None:
    bob = IDENTITIES["bob"].password
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    conn = await asyncpg.connect(host="127.0.0.1", port=gateway.port, user="bob",
                                 password=bob, database="clinic", ssl=context)
    try:
        await denied(conn, 0)
        code, out = access(gateway, "request", "--rule", "break-glass", "--reason",
                           "INC-4242: ward 3 chart outage", "--duration", "2h",
                           secret=bob, user="bob")
        assert code == 0, out
        grant = out.split()[0]
        eventually(lambda: "bob requests access under break-glass for 2h: INC-4242" in
                   gateway.log())  # the alert sink got it
        assert access(gateway, "approve", grant, secret=bob, user="bob") == (
            1, "phigate: you cannot approve your own request\n")
        code, out = access(gateway, "approve", grant, secret=IDENTITIES["alice"].password,
                           user="alice")
        assert code == 1 and "not an approver" in out
        carol = idp.id_token("carol")  # groups [sre, approvers] from the token
        code, out = access(gateway, "list", secret=carol)
        assert code == 0 and f"{grant}\tpending\tbreak-glass\tbob" in out, out
        code, out = access(gateway, "approve", grant, secret=carol)
        assert code == 0 and "approved" in out, out
        await allowed(conn)
        await conn.fetchval(PHI_SQL)
        code, out = access(gateway, "revoke", grant, "--reason", "incident closed",
                           secret=carol)
        assert code == 0 and "revoked" in out, out
        assert await denied(conn, 1.0) < 1.0  # the same session, within a second
        # A grant that runs out while the session uses it.
        code, out = access(gateway, "request", "--rule", "break-glass", "--reason",
                           "INC-4243", "--duration", "2s", secret=bob, user="bob")
        short = out.split()[0]
        assert access(gateway, "approve", short, secret=carol)[0] == 0
        await allowed(conn)
        await denied(conn, 3.0)
    finally:
        await conn.close()
    assert (gateway.journal_dir.parent / "access.sqlite3").is_file()  # the default store
    entries = journal(gateway)
    kinds = [e["type"] for e in entries if str(e["type"]).startswith("access_")]
    assert kinds == ["access_request", "access_approval", "access_grant", "access_revocation",
                     "access_request", "access_approval", "access_grant", "access_expiry"]
    under = [e for e in entries if e["type"] == "statement" and e.get("grants")]
    assert {g for e in under for g in e["grants"]} == {grant, short}  # type: ignore[union-attr]
    assert all(e["decision"] == "allow" and e["rules"] == ["break-glass"] for e in under)


STORE = "grants/access.sqlite3"


@pytest.mark.parametrize("gateway", [{"store": STORE, "poll_interval": "100ms"}],
                         indirect=True)
def test_cli_refusals_and_denial(idp: IdentityProvider, gateway: GatewayProcess) -> None:
    bob = IDENTITIES["bob"].password
    assert access(gateway, "request", "--rule", "break-glass", "--reason", "x", "--duration",
                  "2h", secret="wrong", user="bob")[0] == 1
    code, out = access(gateway, "request", "--rule", "break-glass", "--reason", "x",
                       "--duration", "5h", secret=bob, user="bob")
    assert code == 1 and "at most 4h" in out
    code, out = access(gateway, "request", "--rule", "nope", "--reason", "x", "--duration",
                       "1h", secret=bob, user="bob")
    assert code == 1 and "no rule 'nope'" in out
    code, out = access(gateway, "request", "--rule", "break-glass", "--reason", "x",
                       "--duration", "1h", secret=IDENTITIES["alice"].password, user="alice")
    assert code == 1 and "does not apply to alice" in out  # clinicians may not ask for it
    code, out = access(gateway, "request", "--rule", "break-glass", "--reason", "INC-9",
                       "--duration", "1h", secret=bob, user="bob")
    request = out.split()[0]
    carol = idp.id_token("carol")
    code, out = access(gateway, "deny", request, "--reason", "use the replica", secret=carol)
    assert code == 0 and "denied" in out, out
    code, out = access(gateway, "list", "--all", "--json", secret=carol)
    assert code == 0
    listed = {r["id"]: r for r in map(json.loads, out.splitlines())}
    assert listed[request]["state"] == "denied"
    eventually(lambda: any(e["type"] == "access_denial" and e["reason"] == "use the replica"
                           for e in journal(gateway)))
    assert (gateway.config_path.parent / STORE).is_file()  # access.store, relative to the config
