"""The dependency walk on hostile graphs: cycles, self-references, long chains, wide fans.

Whatever the catalog holds, the walk visits each relation once, reports exactly the PHI
relations reachable from the statement (every member of a cycle included), and never takes more
steps than relations plus dependencies; past its budget the engine refuses instead of walking.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from policies.context import RequestContext
from policies.engine import Engine
from policies.loader import load_policy
from policies.phi import PhiMatcher
from policies.statement import TableRef
from policies.steps import Steps, StepsExceeded

NOW = dt.datetime(2024, 6, 4, 14, 0, tzinfo=dt.UTC)
NODES = [f"s.r{i}" for i in range(12)]
EDGES = st.dictionaries(st.sampled_from(NODES), st.frozensets(st.sampled_from(NODES), max_size=6),
                        max_size=12)


def reachable(start: str, graph: dict[str, frozenset[str]]) -> set[str]:
    """Reference answer by fixed point: grow the set until no dependency adds anything."""
    found = {start}
    while True:
        grown = found | {d for name in found for d in graph.get(name, ())}
        if grown == found:
            return found
        found = grown


@settings(max_examples=300, deadline=None)
@given(EDGES, st.sampled_from(NODES), st.frozensets(st.sampled_from(NODES), max_size=4))
@example({"s.r0": frozenset({"s.r1"}), "s.r1": frozenset({"s.r0"})}, "s.r0",
         frozenset({"s.r1"}))  # two views that refer to each other (issue 18)
@example({"s.r0": frozenset({"s.r0"})}, "s.r0", frozenset({"s.r0"}))  # a view of itself
def test_walk_finds_exactly_the_reachable_phi_relations(
        graph: dict[str, frozenset[str]], start: str, phi: frozenset[str]) -> None:
    matcher = PhiMatcher(f"clinic.{name}" for name in phi)
    steps = Steps()
    touched = matcher.touched("clinic", [TableRef(start[2:], "s")], graph, steps)
    assert set(touched) == reachable(start, graph) & phi
    assert len(touched) == len(set(touched))
    edges = sum(len(deps) for deps in graph.values())
    assert steps.limit - steps.left <= len(NODES) + edges


@settings(max_examples=100, deadline=None)
@given(EDGES, st.sampled_from(NODES), st.integers(min_value=0, max_value=20))
def test_walk_stops_at_its_budget(graph: dict[str, frozenset[str]], start: str,
                                  limit: int) -> None:
    steps = Steps(limit)
    try:
        PhiMatcher(["clinic.s.*"]).touched("clinic", [TableRef(start[2:], "s")], graph, steps)
    except StepsExceeded:
        assert steps.left < 0
    else:
        assert steps.left >= 0


ALLOW_SELECT = """
phi_tables: [clinic.public.patients]
rules:
  - name: everyone-selects
    allow: [select]
"""


def chain(length: int) -> dict[str, frozenset[str]]:
    """v1 reads patients, v2 reads v1, ..., as the gateway's catalog mapping lists them."""
    views = {"public.v1": frozenset({"public.patients"})}
    for i in range(2, length + 1):
        views[f"public.v{i}"] = frozenset({f"public.v{i - 1}"})
        views[f"v{i}"] = views[f"public.v{i}"]
    return views


def test_a_chain_of_a_thousand_views_is_decided_within_a_few_thousand_steps() -> None:
    context = RequestContext("alice", "clinic", NOW, view_dependencies=chain(1000))
    policy = load_policy(ALLOW_SELECT, "p.yaml")
    decided = Engine([policy], max_steps=2_002).decide(context, "SELECT * FROM v1000 WHERE x = 1")
    assert decided.allowed and decided.phi_tables == ("public.patients",)
    refused = Engine([policy], max_steps=1_500).decide(context, "SELECT * FROM v1000 WHERE x = 1")
    assert not refused.allowed and refused.rules == ("too-complex",)
    assert refused.sqlstate == "54001" and "1500 steps" in refused.reason


@pytest.mark.parametrize("sql", ["SELECT * FROM v2", "LOCK TABLE v2 IN EXCLUSIVE MODE",
                                 "SELECT * FROM v3 JOIN t1 ON true"])
def test_cyclic_views_are_decided_and_every_member_is_touched(sql: str) -> None:
    views = {"public.v2": frozenset({"public.v3"}), "v2": frozenset({"public.v3"}),
             "public.v3": frozenset({"public.v2"}), "v3": frozenset({"public.v2"})}
    policy = load_policy("phi_tables: [clinic.public.v3, clinic.public.v2]\n"
                         "rules:\n  - name: all\n    allow: [all]\n", "p.yaml")
    decided = Engine([policy]).decide(RequestContext("bob", "clinic", NOW,
                                                     view_dependencies=views), sql)
    assert decided.allowed
    assert {"public.v2", "public.v3"} <= set(decided.phi_tables)
