"""The policy test runner (``phigate policy test``) and the shipped example cases."""

from __future__ import annotations

import datetime as dt

import pytest

from policies.engine import Engine
from policies.loader import PolicyError
from policies.testcases import format_results, load_cases, run_cases
from tests.policies.conftest import EXAMPLES

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def test_example_cases_pass_and_cover_every_rule(engine: Engine) -> None:
    path = EXAMPLES / "clinic.tests.yaml"
    cases = load_cases(path.read_text(encoding="utf-8"), str(path))
    results = run_cases(engine, cases, now=NOW)
    assert all(r.passed for r in results), format_results(results)
    covered = {rule for r in results for rule in r.decision.rules}
    assert {rule.name for rule in engine.policies[0].rules} <= covered
    assert {c.expect for c in cases.cases} == {"allow", "deny"}


def test_failures_are_reported(engine: Engine) -> None:
    text = """
cases:
  - name: wrong on purpose
    user: alice
    groups: [clinicians]
    database: clinic
    sql: SELECT * FROM patients
    expect: allow
    rule: clinicians-read-phi
  - user: bob
    database: clinic
    sql: SELECT 1
    expect: deny
"""
    results = run_cases(engine, load_cases(text, "t.yaml"), now=NOW, users={"bob": frozenset()})
    assert [r.passed for r in results] == [False, True]
    assert results[0].problem == ("expected allow, got deny; expected rule clinicians-read-phi, "
                                  "got no-bulk-export")
    table = format_results(results)
    assert "FAIL #1 (line 3) wrong on purpose" in table and table.endswith("1 passed, 1 failed")


def test_groups_come_from_case_then_caller_then_file(engine: Engine) -> None:
    text = """
defaults: {database: clinic}
users: {alice: [engineers]}
cases:
  - {user: alice, sql: "SELECT * FROM patients WHERE id = 1", expect: deny}
  - {user: alice, groups: [clinicians], sql: "SELECT * FROM patients WHERE id = 1", expect: allow}
"""
    cases = load_cases(text, "t.yaml")
    assert all(r.passed for r in run_cases(engine, cases, now=NOW))
    flipped = run_cases(engine, cases, now=NOW, users={"alice": frozenset({"clinicians"})})
    assert [r.decision.action for r in flipped] == ["allow", "allow"]


@pytest.mark.parametrize(("text", "where"), [
    ("cases: []\n", "t.yaml:1: cases:"),
    ("cases:\n  - {user: a, sql: x}\n", "t.yaml:2: cases[0].expect:"),
    ("cases:\n  - {user: a, sql: x, expect: maybe}\n", "t.yaml:2: cases[0].expect:"),
    ("cases:\n  - user: a\n    sql: x\n    expect: allow\n    bogus: 1\n",
     "t.yaml:5: cases[0].bogus:"),
    ("cases:\n  - user: a\n    sql: x\n    expect: allow\n    now: yesterday\n",
     "t.yaml:5: cases[0].now:"),
    ("cases:\n  - user: a\n    sql: x\n    expect: allow\n    now: '2024-01-01T10:00:00'\n",
     "t.yaml:5: cases[0].now:"),
    ("defaults: {color: red}\ncases: []\n", "t.yaml:1: defaults.color:"),
    ("cases:\n  - user: a\n    sql: x\n    expect: allow\n    functions: [f]\n",
     "t.yaml:5: cases[0].functions:"),
    ("cases:\n  - user: a\n    sql: x\n    expect: allow\n    functions:\n"
     "      f: {body: x}\n", "t.yaml:6: cases[0].functions.f:"),
    ("cases:\n  - user: a\n    sql: x\n    expect: allow\n    functions:\n"
     "      f: {language: sql, kind: z}\n", "t.yaml:6: cases[0].functions.f.kind:"),
])
def test_bad_cases_files(text: str, where: str) -> None:
    with pytest.raises(PolicyError) as raised:
        load_cases(text, "t.yaml")
    assert str(raised.value).startswith(where)
