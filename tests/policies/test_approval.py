"""``requires_approval``: parsed with located errors; a rule under it allows only with a grant."""

from __future__ import annotations

import datetime as dt

import pytest

from policies.context import RequestContext
from policies.engine import Engine
from policies.loader import PolicyError, load_policy

POLICY = """
phi_tables: [clinic.public.patients]
rules:
  - name: break-glass
    groups: [engineers]
    allow: [select]
    requires_approval: {approvers: [sre, carol], max_duration: 4h, min_approvals: 2}
"""
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def test_parsed() -> None:
    rule = load_policy(POLICY, "p.yaml").rules[0]
    assert rule.approval is not None
    assert rule.approval.approvers == {"sre", "carol"}
    assert (rule.approval.max_duration_s, rule.approval.min_approvals) == (14400.0, 2)
    assert rule.approval.may_approve("carol", frozenset())
    assert rule.approval.may_approve("dave", frozenset({"sre"}))
    assert not rule.approval.may_approve("bob", frozenset({"engineers"}))


@pytest.mark.parametrize(("value", "message"), [
    ("{approvers: []}", "empty list"),
    ("{max_duration: 4h}", "name the users or groups"),
    ("{approvers: [sre], max_duration: soon}", "expected a duration"),
    ("{approvers: [sre], min_approvals: 0}", "positive integer"),
    ("{approvers: [sre], quorum: 2}", "unknown key"),
    ("yes", "expected a mapping"),
])
def test_errors_are_located(value: str, message: str) -> None:
    text = f"rules:\n  - name: r\n    allow: [select]\n    requires_approval: {value}\n"
    with pytest.raises(PolicyError, match=message) as e:
        load_policy(text, "p.yaml")
    assert e.value.line == 4 and "rules[0].requires_approval" in str(e.value.key)


@pytest.mark.parametrize(("grants", "allowed"), [(frozenset(), False),
                                                 (frozenset({"break-glass"}), True),
                                                 (frozenset({"other"}), False)])
def test_allows_only_under_a_grant(grants: frozenset[str], allowed: bool) -> None:
    engine = Engine([load_policy(POLICY, "p.yaml")])
    ctx = RequestContext(identity="bob", database="clinic", now=NOW,
                         groups=frozenset({"engineers"}), grants=grants)
    decision = engine.decide(ctx, "SELECT mrn FROM patients WHERE id = 7")
    assert decision.allowed is allowed
    if not allowed:
        assert "phigate access request --rule break-glass" in decision.reason
