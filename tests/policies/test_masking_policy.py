"""The masking policy language: phi_columns, masking rules, strategies, errors with locations."""

from __future__ import annotations

import pytest

from policies.engine import Engine
from policies.loader import PolicyError, load_policy
from policies.masking import REDACT, Strategy, parse_strategy

BASE = """\
phi_tables: [clinic.public.patients, clinic.public.encounters]
phi_columns:
  clinic.public.patients: [ssn, email, first_name, date_of_birth]
rules:
  - name: engineers
    groups: [engineers]
    allow: [select]
    phi: masked
masking:
  - name: engineers-see-masked
    groups: [engineers]
    databases: [clinic]
    columns:
      clinic.public.patients.ssn: partial(last=4)
      clinic.public.patients.email: hash
      clinic.public.patients.*: redact
    detect: [ssn, email]
"""


def engine() -> Engine:
    return Engine([load_policy(BASE, "m.yaml")])


def test_profile_resolves_strategies_in_order_and_phi_columns_default_to_redact() -> None:
    profile = engine().mask_profile("bob", frozenset({"engineers"}), "clinic")
    assert profile is not None and profile.rules == ("engineers-see-masked",)
    assert profile.strategy("public", "patients", "ssn") == Strategy("partial", last=4)
    assert profile.strategy("public", "patients", "email") == Strategy("hash")
    assert profile.strategy("public", "patients", "first_name") == REDACT
    assert profile.strategy("public", "patients", "id") is None  # not an identifier
    # a PHI table without phi_columns: every column is an identifier
    assert profile.strategy("public", "encounters", "reason") == REDACT
    assert profile.detect == {"ssn", "email"}


def test_masking_rules_apply_by_group_and_database() -> None:
    assert engine().mask_profile("alice", frozenset({"clinicians"}), "clinic") is None
    assert engine().mask_profile("bob", frozenset({"engineers"}), "billing") is None


def test_phi_masked_rule_marks_the_decision_masked() -> None:
    import datetime as dt

    from policies.context import RequestContext
    ctx = RequestContext(identity="bob", database="clinic", groups=frozenset({"engineers"}),
                         now=dt.datetime(2024, 6, 4, tzinfo=dt.UTC))
    decision = engine().decide(ctx, "SELECT ssn FROM patients WHERE id = 7")
    assert decision.allowed and decision.masked
    assert not engine().decide(ctx, "SELECT 1").masked


@pytest.mark.parametrize(("text", "expected"), [
    ("redact", Strategy("redact")), ("hash", Strategy("hash")), ("year", Strategy("year")),
    ("partial(last=4)", Strategy("partial", last=4)),
    ("partial(first=1, last=2)", Strategy("partial", first=1, last=2)),
])
def test_strategies_parse(text: str, expected: Strategy) -> None:
    assert parse_strategy(text) == expected
    assert parse_strategy(str(expected)) == expected


@pytest.mark.parametrize(("edit", "line", "key", "message"), [
    (("partial(last=4)", "partial(keep=4)"), 14, "masking[0].columns.clinic.public.patients.ssn",
     "bad partial argument"),
    (("hash", "sha1"), 15, "masking[0].columns.clinic.public.patients.email",
     "unknown masking strategy"),
    (("detect: [ssn, email]", "detect: [ssn, dna]"), 17, "masking[0].detect[1]",
     "unknown detector"),
    (("clinic.public.patients.*: redact", "clinic.patients.*: redact"), 16,
     "masking[0].columns.clinic.patients.*", "expected database.schema.table.column"),
    (("    databases: [clinic]\n", "    databases: [clinic]\n    on_derived: allow\n"), 13,
     "masking[0].on_derived", "expected deny or redact"),
    (("    databases: [clinic]\n", "    databases: [clinic]\n    colums: {}\n"), 13,
     "masking[0].colums", "unknown key (did you mean 'columns'?)"),
    (("phi: masked", "phi: hidden"), 8, "rules[0].phi", "expected allow, deny or masked"),
    (("[ssn, email, first_name, date_of_birth]", "ssn"), 3,
     "phi_columns.clinic.public.patients", "expected a list"),
])
def test_errors_name_file_line_and_key(edit: tuple[str, str], line: int, key: str,
                                       message: str) -> None:
    text = BASE.replace(*edit)
    with pytest.raises(PolicyError) as info:
        load_policy(text, "m.yaml")
    error = info.value
    assert (error.line, error.key) == (line, key), str(error)
    assert message in error.message
    assert str(error).startswith(f"m.yaml:{line}: {key}:")


def test_a_masking_rule_must_mask_something() -> None:
    text = BASE.replace("    columns:\n      clinic.public.patients.ssn: partial(last=4)\n"
                        "      clinic.public.patients.email: hash\n"
                        "      clinic.public.patients.*: redact\n", "").replace(
        "    detect: [ssn, email]\n", "")
    with pytest.raises(PolicyError, match="masks nothing"):
        load_policy(text, "m.yaml")
