"""Byte limits in policies: sizes, the rule keys, the derived default and the hourly budget."""

from __future__ import annotations

import datetime as dt

import pytest

from policies.context import RequestContext
from policies.engine import Engine
from policies.loader import PolicyError, load_policy
from policies.sizes import (
    DEFAULT_ROW_WIDTH,
    FLOOR_BYTES,
    build_row_widths,
    derived_max_bytes,
    parse_size,
)

NOW = dt.datetime(2024, 6, 4, 10, 0, tzinfo=dt.UTC)
POLICY = """\
phi_tables: [clinic.public.patients]
rules:
  - name: readers
    users: [alice]
    allow: [select]
    max_rows: 500
  - name: sized
    users: [carol]
    allow: [select]
    max_rows: 500
    max_bytes: 500KiB
    max_phi_bytes_per_hour: 2MiB
"""


@pytest.mark.parametrize(("text", "size"), [
    ("500KiB", 512_000), ("2MiB", 2 * 1024**2), ("1GiB", 1024**3), ("10kB", 10_240),
    ("4096", 4096), (4096, 4096), ("1 MiB", 1024**2), ("7B", 7),
])
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "-1KiB", "1.5MiB", "12 parsecs", "KiB", True, None])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_rule_keys_load_and_bad_ones_name_the_key() -> None:
    policy = load_policy(POLICY, "p.yaml")
    sized = policy.rules[1]
    assert sized.max_bytes == 512_000 and sized.max_phi_bytes_per_hour == 2 * 1024**2
    with pytest.raises(PolicyError, match=r"rules\[1\]\.max_bytes.*bad size"):
        load_policy(POLICY.replace("500KiB", "lots"), "p.yaml")
    with pytest.raises(PolicyError, match="only has an effect"):
        load_policy("rules:\n  - name: d\n    deny: [ddl]\n    max_bytes: 1MiB\n", "p.yaml")


def ctx(user: str, **kw: object) -> RequestContext:
    return RequestContext(identity=user, database="clinic", now=NOW, **kw)  # type: ignore[arg-type]


def test_explicit_max_bytes_and_budget_reach_the_decision() -> None:
    engine = Engine([load_policy(POLICY, "p.yaml")])
    d = engine.decide(ctx("carol"), "SELECT * FROM patients WHERE id = 1")
    assert d.allowed and d.max_bytes == 512_000 and not d.max_bytes_derived
    assert d.max_phi_bytes_per_hour == 2 * 1024**2
    d = engine.decide(ctx("carol"), "SELECT * FROM departments")
    assert d.allowed and d.max_bytes is None  # bytes count only where PHI is touched


def test_hourly_byte_budget_used_up_denies() -> None:
    engine = Engine([load_policy(POLICY, "p.yaml")])
    d = engine.decide(ctx("carol", phi_bytes_last_hour=2 * 1024**2),
                      "SELECT * FROM patients WHERE id = 1")
    assert not d.allowed and "PHI byte budget" in d.reason


def test_derived_default_from_row_widths() -> None:
    widths = build_row_widths([("public", "patients", "300")])
    assert widths == {"public.patients": 300, "patients": 300}
    engine = Engine([load_policy(POLICY, "p.yaml")])
    d = engine.decide(ctx("alice", row_widths=widths), "SELECT * FROM patients WHERE id = 1")
    assert d.max_bytes == 2 * 500 * 300 and d.max_bytes_derived
    d = engine.decide(ctx("alice"), "SELECT * FROM patients WHERE id = 1")
    assert d.max_bytes == 2 * 500 * DEFAULT_ROW_WIDTH  # no statistics: the default width


def test_derived_default_has_a_floor_and_sums_the_tables() -> None:
    assert derived_max_bytes(1, ["patients"], {"patients": 10}) == FLOOR_BYTES
    widths = {"public.patients": 200, "encounters": 100}
    assert derived_max_bytes(1000, ["public.patients", "encounters"], widths) == 600_000
