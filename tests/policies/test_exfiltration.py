"""The exfiltration corpus against the example clinic policy: every shape gets its decision."""

from __future__ import annotations

import pytest

from policies.engine import Engine
from policies.model import Decision

from .conftest import MakeCtx
from .exfiltration import ATTEMPTS, Attempt
from .functions_catalog import catalog

FUNCTIONS = catalog()  # the user functions of the corpus's function attempts
VIEWS = {"patient_directory": frozenset({"public.patients"}),
         "public.patient_directory": frozenset({"public.patients"})}


def _check(decision: Decision, expect: str, attempt: Attempt) -> None:
    if expect == "allow":
        assert decision.allowed, decision.reason
    elif expect == "export":
        assert not decision.allowed and "no-bulk-export" in decision.rules, decision.reason
        assert decision.bulk_export and decision.export_via
        assert attempt.via in "; ".join(decision.export_via), decision.export_via
    else:
        assert not decision.allowed and "engineers-no-phi" in decision.rules, decision.reason
        assert decision.phi_tables


def test_corpus_is_large_enough() -> None:
    assert len(ATTEMPTS) >= 60
    assert len({a.sql for a in ATTEMPTS}) == len(ATTEMPTS)


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.sql[:60])
def test_clinician(engine: Engine, ctx: MakeCtx, attempt: Attempt) -> None:
    decision = engine.decide(ctx("alice", view_dependencies=VIEWS, functions=FUNCTIONS),
                             attempt.sql)
    _check(decision, attempt.alice, attempt)


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.sql[:60])
def test_engineer(engine: Engine, ctx: MakeCtx, attempt: Attempt) -> None:
    decision = engine.decide(ctx("bob", view_dependencies=VIEWS, functions=FUNCTIONS),
                             attempt.sql)
    _check(decision, attempt.bob, attempt)


def test_export_message_names_the_construct_and_what_to_write(engine: Engine,
                                                               ctx: MakeCtx) -> None:
    d = engine.decide(ctx("alice"), "SELECT jsonb_agg(p) FROM patients p WHERE id > 0")
    assert "by aggregate jsonb_agg" in d.reason
    assert d.hint is not None and "LIMIT 500" in d.hint and "count/sum/avg" in d.hint


def test_statistics_of_a_phi_table_count_as_that_table(engine: Engine, ctx: MakeCtx) -> None:
    d = engine.decide(ctx("alice"), "SELECT * FROM pg_stats WHERE tablename = 'patients'")
    assert not d.allowed and d.phi_tables == ("patients",) and d.bulk_export
    assert d.hint is not None and "tablename" in d.hint
    d = engine.decide(ctx("alice"), "SELECT query FROM pg_stat_activity")
    assert d.allowed and "clinic.public.patients" in d.phi_tables


def test_a_users_view_of_the_activity_view_is_the_activity_view(engine: Engine,
                                                                 ctx: MakeCtx) -> None:
    views = {"who": frozenset({"pg_catalog.pg_stat_activity"})}
    d = engine.decide(ctx("bob", view_dependencies=views), "SELECT * FROM who")
    assert not d.allowed and "engineers-no-phi" in d.rules


def test_bounds_add_up_over_the_statement(engine: Engine, ctx: MakeCtx) -> None:
    two = ("SELECT (SELECT string_agg(ssn, ',') FROM (SELECT ssn FROM patients LIMIT 300) a) || "
           "(SELECT string_agg(ssn, ',') FROM (SELECT ssn FROM patients LIMIT 300) b)")
    assert not engine.decide(ctx("alice"), two).allowed
    assert engine.decide(ctx("alice"), two.replace("300", "200")).allowed
