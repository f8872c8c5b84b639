"""Console sign-in pieces: the password check against SCRAM verifiers, the failure limits,
session lifetimes and the login form's CSRF token."""

from __future__ import annotations

import time

from gateway.console.auth import Authenticator, LoginCsrf, SessionStore, same_token
from gateway.console.signon import PendingSignIns
from gateway.settings.config import Limits, UserSettings
from protocols.postgres.scram import check_password, make_verifier, parse_verifier

VERIFIER = parse_verifier(make_verifier("right password", iterations=4096))


def test_check_password_against_a_scram_verifier() -> None:
    assert check_password(VERIFIER, "right password")
    assert not check_password(VERIFIER, "right passwore")
    assert not check_password(VERIFIER, "")


def users() -> dict[str, UserSettings]:
    return {"carol": UserSettings("carol", VERIFIER, frozenset({"compliance"})),
            "alice": UserSettings("alice", VERIFIER, frozenset({"clinicians"}))}


def test_only_auditors_with_the_right_password_get_in() -> None:
    auth = Authenticator(users, frozenset({"compliance"}), Limits())
    assert auth.check("carol", "right password") == "carol"
    assert auth.check("carol", "wrong") is None
    assert auth.check("alice", "right password") is None  # not an auditor
    assert auth.check("nobody", "right password") is None


def test_failures_are_limited_per_name_and_address_and_per_address() -> None:
    auth = Authenticator(users, frozenset({"compliance"}),
                         Limits(auth_max_failures=3, auth_max_failures_per_ip=5))
    for _ in range(3):
        auth.failed("carol", "10.0.0.1")
    assert auth.throttled("carol", "10.0.0.1")
    assert not auth.throttled("carol", "10.0.0.2") and not auth.throttled("dana", "10.0.0.1")
    for name in ("a", "b"):
        auth.failed(name, "10.0.0.1")
    assert auth.throttled("dana", "10.0.0.1")  # spraying names from one address


def test_sessions_expire_when_idle_and_when_old() -> None:
    store = SessionStore(idle_s=0.05, max_s=10)
    session = store.create("carol")
    assert store.get(session.token) is session
    assert store.get(session.token + "x") is None and store.get(None) is None
    time.sleep(0.1)
    assert store.get(session.token) is None
    old = SessionStore(idle_s=10, max_s=0.05)
    kept = old.create("carol")
    time.sleep(0.1)
    assert old.get(kept.token) is None


def test_login_csrf_tokens_fit_only_their_cookie() -> None:
    csrf = LoginCsrf()
    cookie, token = csrf.new()
    other_cookie, other_token = csrf.new()
    assert csrf.valid(cookie, token)
    assert not csrf.valid(cookie, other_token) and not csrf.valid(other_cookie, token)
    assert not csrf.valid(None, token) and not csrf.valid(cookie, None)
    assert not LoginCsrf().valid(cookie, token)  # another console's key
    assert same_token("abc", "abc") and not same_token("abc", "abd")
    assert not same_token("abc", None)


def test_pending_sso_sign_ins_are_single_use_bound_and_bounded() -> None:
    pending = PendingSignIns(ttl_s=10, limit=3)
    state, begun = pending.add("browser-a", "/people")
    assert len({state, begun.verifier, begun.nonce}) == 3 and len(state) >= 43
    assert pending.take(state, "browser-b") is None  # another browser: refused, and used up
    assert pending.take(state, "browser-a") is None
    state, begun = pending.add("browser-a", "")
    assert pending.take("", "browser-a") is None and pending.take(state + "x", "browser-a") is None
    assert pending.take(state, None) is None  # no binding cookie at all
    state, begun = pending.add("browser-a", "")
    assert pending.take(state, "browser-a") == begun
    assert pending.take(state, "browser-a") is None  # once
    first, _ = pending.add("a", "")
    for _ in range(3):
        pending.add("a", "")
    assert pending.take(first, "a") is None  # the oldest gave way to the limit
    old = PendingSignIns(ttl_s=0.05)
    state, _ = old.add("a", "")
    time.sleep(0.1)
    assert old.take(state, "a") is None  # expired


def test_sso_identities_need_to_be_auditors_and_never_take_a_local_name() -> None:
    auth = Authenticator(users, frozenset({"compliance", "priya@clinic.example"}), Limits())
    assert auth.sso_refusal("priya@clinic.example", frozenset()) is None
    assert auth.sso_refusal("quinn@clinic.example", frozenset({"compliance"})) is None
    assert auth.sso_refusal("quinn@clinic.example", frozenset({"clinicians"})) == (
        "quinn@clinic.example is not an auditor")
    assert auth.sso_refusal("carol", frozenset({"compliance"})) == (
        "carol is a local identity: sign in with its password")
