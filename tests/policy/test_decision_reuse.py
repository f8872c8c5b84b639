"""The policy hook reuses a plain decision per statement shape, never past what it depends on.

A decision with nothing to work out per statement (no row or byte limit, cursor or reason
setting) is reused with its read-only proof; the proof is redone when the catalog facts it
used are replaced, and a statement is never read-only while an unproven one is in flight.
The session's catalog facts are set by hand (no upstream): what is tested is the reuse.
"""

from __future__ import annotations

from pathlib import Path

from gateway.policy.catalog import VolatilityRef
from gateway.policy.database_catalog import DatabaseCatalog
from gateway.policy.hook import PolicyHook
from gateway.policy.session_state import SessionState
from gateway.proxy.hooks import Outcome, Phase, SessionInfo, Statement
from gateway.settings.config import load_config
from policies.readonly import NOTHING_KNOWN, Volatility

from ..settings.test_config import VERIFIER

SESSION = SessionInfo("s1", "alice", frozenset(), "127.0.0.1", 5000, "clinic", "psql", None)
POLICY = """\
phi_tables: []
rules:
  - {name: everything, users: [alice], allow: [all]}
"""
ACCOUNTS = Volatility(frozenset(), frozenset({"accounts", "public.accounts"}), frozenset())


def policy_hook(tmp_path: Path) -> tuple[PolicyHook, SessionState]:
    (tmp_path / "policy.yaml").write_text(POLICY, encoding="utf-8")
    config = tmp_path / "phigate.yaml"
    config.write_text(f"""\
listen: 127.0.0.1:6432
databases: {{clinic: {{host: 127.0.0.1, user: svc, password_env: PW}}}}
users: {{alice: {{password: "{VERIFIER}"}}}}
policies: [policy.yaml]
""", encoding="utf-8")
    hook = PolicyHook(load_config(config, environ={"PW": "x"}))
    volatility = VolatilityRef()
    volatility.current = ACCOUNTS
    state = SessionState(SESSION, None, DatabaseCatalog(volatility=volatility))
    hook._sessions[SESSION.session_id] = state
    return hook, state


async def decide(hook: PolicyHook, sql: str, number: int = 1) -> Statement:
    statement = Statement(SESSION, number, Phase.SIMPLE, sql)
    statement.verdict = await hook.before_statement(statement) or statement.verdict
    return statement


async def test_a_repeated_read_stays_proved_until_the_catalog_is_replaced(
        tmp_path: Path) -> None:
    hook, state = policy_hook(tmp_path)
    for aid in (1, 2, 3):
        read = await decide(hook, f"SELECT balance FROM accounts WHERE aid = {aid}")
        assert read.read_only
    assert state.plain  # the decision was reused
    state.volatility.current = NOTHING_KNOWN  # the catalog changed: proofs are forgotten
    unproven = await decide(hook, "SELECT balance FROM accounts WHERE aid = 4")
    assert not unproven.read_only
    hook.after_statement(unproven, Outcome(command_tags=["SELECT 1"]))
    state.volatility.current = ACCOUNTS  # read again
    assert (await decide(hook, "SELECT balance FROM accounts WHERE aid = 5")).read_only


async def test_no_read_is_proved_while_an_unproven_statement_is_in_flight(
        tmp_path: Path) -> None:
    hook, _ = policy_hook(tmp_path)
    assert (await decide(hook, "SELECT balance FROM accounts WHERE aid = 1")).read_only
    write = await decide(hook, "UPDATE accounts SET balance = 0 WHERE aid = 1", 2)
    assert not write.read_only
    held = await decide(hook, "SELECT balance FROM accounts WHERE aid = 2", 3)
    assert not held.read_only
    hook.after_statement(write, Outcome(command_tags=["UPDATE 1"]))
    hook.after_statement(held, Outcome(command_tags=["SELECT 1"]))
    assert (await decide(hook, "SELECT balance FROM accounts WHERE aid = 3", 4)).read_only


async def test_a_reason_setting_is_cut_out_every_time(tmp_path: Path) -> None:
    hook, state = policy_hook(tmp_path)
    sql = "SET phigate.reason = 'audit 7'; SELECT balance FROM accounts WHERE aid = 1"
    for number in (1, 2):
        statement = await decide(hook, sql, number)
        assert statement.verdict.rewrite_sql is not None
        assert "phigate.reason" not in statement.verdict.rewrite_sql
    assert not state.plain
