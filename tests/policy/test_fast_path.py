"""The policy hook's fast path (gateway/policy/reuse.py) is never used past what it depends on.

A plain allowed decision is reused for the same text, and for texts of the same shape, with
one lookup; each test warms it and then moves one thing the decision was made on: the loaded
policies, the minute (time windows), the session's reason, its catalogs, its identity and
groups, the access grants, how the text is read; and the reused statement must then be
decided as a fresh one would be. The session's catalog facts are set by hand (no upstream).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.clock import Clock
from gateway.errors import PolicyDenied
from gateway.policy.catalog import VolatilityRef
from gateway.policy.database_catalog import DatabaseCatalog
from gateway.policy.hook import DECISION_TAG, PolicyHook
from gateway.policy.session_state import SessionState
from gateway.proxy.hooks import MUST_AWAIT, Outcome, Phase, SessionInfo, Statement
from gateway.settings.config import load_config
from policies.readonly import NOTHING_KNOWN, Volatility

from ..settings.test_config import VERIFIER

POLICY = """\
phi_tables: []
rules:
  - {name: everything, users: [alice], allow: [all]}
  - {name: readers, groups: [readers], allow: [select]}
  - name: daytime
    users: [carol]
    allow: [select]
    hours: "09:00-17:00"
    timezone: UTC
  - {name: with-reason, users: [dave], allow: [select], require_reason: true}
"""
DENY_ALICE = POLICY.replace("users: [alice], allow: [all]", "users: [alice], allow: [insert]")
ACCOUNTS = Volatility(frozenset(), frozenset({"accounts", "public.accounts"}), frozenset())
READ = "SELECT balance FROM accounts WHERE aid = 1"
NOON = dt.datetime(2026, 12, 3, 12, 0, 30, tzinfo=dt.UTC)


def settings(tmp_path: Path, policy: str = POLICY):  # type: ignore[no-untyped-def]
    (tmp_path / "policy.yaml").write_text(policy, encoding="utf-8")
    config = tmp_path / "phigate.yaml"
    config.write_text(f"""\
listen: 127.0.0.1:6432
databases: {{clinic: {{host: 127.0.0.1, user: svc, password_env: PW}}}}
users: {{alice: {{password: "{VERIFIER}"}}}}
policies: [policy.yaml]
""", encoding="utf-8")
    return load_config(config, environ={"PW": "x"})


def start(hook: PolicyHook, identity: str = "alice", groups: frozenset[str] = frozenset(),
          session_id: str = "s1") -> tuple[SessionInfo, SessionState]:
    info = SessionInfo(session_id, identity, groups, "127.0.0.1", 5000, "clinic", "psql", None)
    volatility = VolatilityRef()
    volatility.current = ACCOUNTS
    state = SessionState(info, None, DatabaseCatalog(volatility=volatility))
    hook._sessions[session_id] = state
    return info, state


def decide(hook: PolicyHook, info: SessionInfo, sql: str = READ,
           phase: Phase = Phase.SIMPLE) -> Statement:
    """Decide synchronously, as the chain does; a refusal raises."""
    statement = Statement(info, 1, phase, sql)
    verdict = hook.before_statement_now(statement)
    assert verdict is not MUST_AWAIT
    hook.after_statement(statement, Outcome(command_tags=["SELECT 1"]))
    return statement


def test_a_repeated_text_and_its_shape_reuse_one_decision(tmp_path: Path) -> None:
    hook = PolicyHook(settings(tmp_path))
    info, state = start(hook)
    first = decide(hook, info)
    assert READ in state.reuse and first.read_only
    again = decide(hook, info)
    shaped = decide(hook, info, READ.replace("= 1", "= 99"))
    assert again.tags[DECISION_TAG] is first.tags[DECISION_TAG] is shaped.tags[DECISION_TAG]
    assert again.read_only and shaped.read_only


def test_a_policy_reload_is_in_force_for_the_next_reused_statement(tmp_path: Path) -> None:
    hook = PolicyHook(settings(tmp_path))
    info, _ = start(hook)
    decide(hook, info)
    decide(hook, info, phase=Phase.PARSE)
    hook.config_loaded(settings(tmp_path, DENY_ALICE))  # what SIGHUP does
    for phase in (Phase.SIMPLE, Phase.PARSE):
        with pytest.raises(PolicyDenied):
            decide(hook, info, phase=phase)
        with pytest.raises(PolicyDenied):
            decide(hook, info, READ.replace("= 1", "= 2"), phase=phase)


def test_another_identity_or_group_never_gets_a_reused_decision(tmp_path: Path) -> None:
    hook = PolicyHook(settings(tmp_path))
    alice, _ = start(hook)
    decide(hook, alice, "DELETE FROM accounts WHERE aid = 1")
    decide(hook, alice)
    reader, _ = start(hook, "erin", frozenset({"readers"}), "s2")
    outsider, _ = start(hook, "erin", frozenset({"writers"}), "s3")
    decide(hook, reader)
    with pytest.raises(PolicyDenied):
        decide(hook, reader, "DELETE FROM accounts WHERE aid = 1")
    with pytest.raises(PolicyDenied):
        decide(hook, outsider)


def test_a_time_window_closes_on_a_reused_decision(tmp_path: Path) -> None:
    clock = Clock(NOON.replace(hour=16, minute=59))
    hook = PolicyHook(settings(tmp_path), clock=clock)
    info, state = start(hook, "carol")
    decide(hook, info)
    assert state.reuse
    clock._offset += 60  # 17:00:30: outside 09:00-17:00
    with pytest.raises(PolicyDenied):
        decide(hook, info)


def test_a_reason_change_redecides(tmp_path: Path) -> None:
    hook = PolicyHook(settings(tmp_path))
    info, state = start(hook, "dave")
    state.reason = "INC-7"
    decide(hook, info)
    assert state.reuse
    state.reason = None  # RESET phigate.reason
    with pytest.raises(PolicyDenied):
        decide(hook, info)


def test_replaced_catalogs_redo_the_read_only_proof(tmp_path: Path) -> None:
    hook = PolicyHook(settings(tmp_path))
    info, state = start(hook)
    assert decide(hook, info).read_only
    state.volatility.current = NOTHING_KNOWN  # the catalog changed: forgotten until read again
    assert not decide(hook, info).read_only
    state.volatility.current = ACCOUNTS
    assert decide(hook, info).read_only
    state.catalog.views = {"accounts": frozenset({"public.secrets"})}  # re-read: accounts is a view
    assert not decide(hook, info).read_only


def test_ddl_left_open_in_one_session_leaves_the_others_on_the_committed_catalog(
        tmp_path: Path) -> None:
    """Its own DDL may have replaced a function: that session proves nothing read-only until
    its transaction ends; the others cannot see that DDL and keep their proofs (and reuse)."""
    hook = PolicyHook(settings(tmp_path))
    info, state = start(hook)
    other_info, other = start(hook, session_id="s2")
    other.catalog = state.catalog  # one database: one shared catalog
    assert decide(hook, other_info).read_only
    shared = other.volatility
    decide(hook, info, "CREATE TABLE unrelated (x int)")  # completed, transaction still open
    assert state.uncommitted and info.transaction.on_idle is not None
    assert not decide(hook, info).read_only
    assert other.volatility is shared and shared.current is ACCOUNTS
    assert decide(hook, other_info).read_only
    assert decide(hook, other_info, "SELECT balance FROM accounts WHERE aid = 2").read_only
    info.transaction.on_idle()  # ReadyForQuery 'I'
    assert decide(hook, info).read_only


def test_no_reuse_while_an_unproven_statement_is_in_flight(tmp_path: Path) -> None:
    hook = PolicyHook(settings(tmp_path))
    info, _ = start(hook)
    decide(hook, info)
    write = Statement(info, 2, Phase.SIMPLE, "UPDATE accounts SET balance = 0")
    hook.before_statement_now(write)
    held = decide(hook, info)
    assert not held.read_only  # the UPDATE may change what the read sees
    hook.after_statement(write, Outcome(command_tags=["UPDATE 1"]))
    assert decide(hook, info).read_only


def test_grants_and_backslash_texts_are_never_reused(tmp_path: Path) -> None:
    hook = PolicyHook(settings(tmp_path))
    info, state = start(hook)
    hook.grants = lambda identity: {}
    decide(hook, info)
    assert not state.reuse  # grants can be revoked at any moment: asked every time
    hook.grants = PolicyHook(settings(tmp_path)).grants
    statement = Statement(info, 1, Phase.SIMPLE, READ, standard_strings=False)
    hook.before_statement_now(statement)
    assert not state.reuse  # text read with backslash escapes is parsed every time


def test_an_execute_right_after_its_parse_is_not_kept_for_later(tmp_path: Path) -> None:
    """The Execute reuses its Parse's decision (made up to a second earlier, maybe in the
    minute before): that one must not be kept for the fast path's next minute."""
    clock = Clock(NOON.replace(hour=16, minute=59, second=59, microsecond=600000))
    hook = PolicyHook(settings(tmp_path), clock=clock)
    info, state = start(hook, "carol")
    info.names.parse("", READ)
    hook.before_statement_now(Statement(info, 1, Phase.PARSE, READ))
    state.reuse.clear()
    state.shapes.clear()
    clock._offset += 0.6  # 17:00:00 and a bit: the window has closed
    info.names.bind(b"B\0\0\0\x0c\0\0\0\0\0\0\0\0")
    decide(hook, info, phase=Phase.EXECUTE)  # the Parse's decision, as before
    assert not state.reuse
    with pytest.raises(PolicyDenied):
        decide(hook, info)
