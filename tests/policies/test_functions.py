"""Function bodies that read PHI: what the catalog of user functions makes of each call."""

from __future__ import annotations

import pytest

from policies.engine import Engine
from policies.functions import NOTHING_KNOWN, build_functions, function_body
from policies.statement import TableRef

from .conftest import MakeCtx
from .functions_catalog import catalog

FUNCTIONS = catalog()
PATIENTS = TableRef("patients")

# (statement, clinician alice, engineer bob): export | phi | allow | deny (by another rule)
CASES = [
    ("SELECT leak_sql()", "export", "phi"),
    ("SELECT public.leak_sql()", "export", "phi"),
    ("SELECT leak_definer()", "export", "phi"),
    ("SELECT * FROM leak_setof()", "export", "phi"),
    ("SELECT leak_setof()", "export", "phi"),
    ("SELECT x FROM leak_setof() x WHERE x.id > 0", "export", "phi"),
    ("SELECT (SELECT leak_sql())", "export", "phi"),
    ("SELECT 1 FROM departments WHERE leak_sql() IS NOT NULL", "export", "phi"),
    ("SELECT leak_atomic()", "export", "phi"),
    ("SELECT leak_return()", "export", "phi"),
    ("SELECT wrap_sql()", "export", "phi"),
    ("SELECT * FROM fn_view", "export", "phi"),
    ("SELECT 1 ### 2", "export", "phi"),
    ("SELECT 1 OPERATOR(public.###) 2", "export", "phi"),
    ("SELECT 1::boxed", "export", "phi"),
    ("SELECT CAST(1 AS public.boxed)", "export", "phi"),
    ("SELECT leak_plpgsql()", "allow", "phi"),
    ("SELECT wrap_opaque()", "allow", "phi"),
    ("SELECT not_created_yet()", "allow", "phi"),
    ("SELECT recursive_a()", "allow", "allow"),
    ("PREPARE q AS SELECT leak_plpgsql()", "allow", "phi"),
    ("DECLARE c CURSOR FOR SELECT leak_sql()", "export", "phi"),
    ("SELECT get_mrn(7)", "allow", "phi"),
    ("SELECT dept_name(1)", "allow", "allow"),
    ("SELECT ext_digest('x')", "allow", "allow"),
    ("SELECT count(*), upper('x'), now() FROM departments", "allow", "allow"),
    ("INSERT INTO noted (id) VALUES (1)", "deny", "phi"),
    # its rule reads patients while it writes ruled, which is not PHI: a copy of PHI
    ("INSERT INTO ruled (id) VALUES (1)", "export", "phi"),
    ("UPDATE noted SET id = 2", "deny", "phi"),
    ("SELECT * FROM noted", "allow", "allow"),  # triggers and defaults run on writes only
    ("INSERT INTO stamped (id) VALUES (1)", "deny", "phi"),  # plpgsql trigger: opaque
    ("INSERT INTO departments (id) VALUES (1)", "deny", "allow"),
]


def _outcome(engine: Engine, ctx: MakeCtx, user: str, sql: str) -> str:
    decision = engine.decide(ctx(user, functions=FUNCTIONS), sql)
    if decision.allowed:
        return "allow"
    if "engineers-no-phi" in decision.rules:
        assert decision.phi_tables, decision.reason
        return "phi"
    if "no-bulk-export" in decision.rules:
        assert decision.export_via, decision.reason
        return "export"
    return "deny"


@pytest.mark.parametrize(("sql", "alice", "bob"), CASES, ids=[c[0][:50] for c in CASES])
def test_function_calls(engine: Engine, ctx: MakeCtx, sql: str, alice: str, bob: str) -> None:
    assert _outcome(engine, ctx, "alice", sql) == alice
    assert _outcome(engine, ctx, "bob", sql) == bob


def test_denials_say_which_function(engine: Engine, ctx: MakeCtx) -> None:
    d = engine.decide(ctx("bob", functions=FUNCTIONS), "SELECT leak_plpgsql()")
    assert "through function leak_plpgsql (language plpgsql)" in d.reason
    assert "clinic.public.patients" in d.phi_tables
    d = engine.decide(ctx("alice", functions=FUNCTIONS), "SELECT leak_sql()")
    assert "function leak_sql (its body reads patients in bulk)" in d.reason
    d = engine.decide(ctx("bob", functions=FUNCTIONS), "DO $$ BEGIN NULL; END $$")
    assert d.phi_tables and not d.allowed


def test_clinician_opaque_call_gets_a_byte_limit(engine: Engine, ctx: MakeCtx) -> None:
    d = engine.decide(ctx("alice", functions=FUNCTIONS), "SELECT leak_plpgsql()")
    assert d.allowed and d.phi_tables and d.max_bytes is not None and d.max_bytes_derived


def test_execute_of_a_prepared_call_is_decided_on_the_function(engine: Engine,
                                                               ctx: MakeCtx) -> None:
    prepared = engine.classify("PREPARE q AS SELECT leak_plpgsql()").statements[0]
    assert prepared.effect is not None and prepared.effect.statement is not None
    d = engine.decide(ctx("bob", functions=FUNCTIONS,
                          prepared={"q": prepared.effect.statement}), "EXECUTE q")
    assert not d.allowed and "engineers-no-phi" in d.rules


def test_scalar_user_functions_are_not_aggregates(engine: Engine, ctx: MakeCtx) -> None:
    sql = "SELECT initials(mrn) FROM patients WHERE id > 0"
    assert engine.decide(ctx("alice", functions=FUNCTIONS), sql).allowed
    # without the catalog the name could be an aggregate: refused as before
    assert not engine.decide(ctx("alice"), sql).allowed
    d = engine.decide(ctx("alice", functions=FUNCTIONS),
                      "SELECT my_concat(mrn) FROM patients WHERE id > 0")
    assert not d.allowed and "no-bulk-export" in d.rules


def test_until_the_catalog_is_read_every_user_function_is_opaque(engine: Engine,
                                                                ctx: MakeCtx) -> None:
    d = engine.decide(ctx("bob", functions=NOTHING_KNOWN), "SELECT dept_name(1)")
    assert not d.allowed and "catalog not read yet" in d.reason
    assert engine.decide(ctx("bob", functions=NOTHING_KNOWN),
                         "SELECT count(*), lag(id) OVER () FROM departments").allowed


def test_a_user_function_shadowing_a_built_in_name_counts(engine: Engine, ctx: MakeCtx) -> None:
    shadow = build_functions([("b", "pg_catalog", "upper", "", "", ""),
                              ("f", "evil", "upper", "f", "plpgsql", "BEGIN END")])
    d = engine.decide(ctx("bob", functions=shadow), "SELECT upper(name) FROM departments")
    assert not d.allowed and "engineers-no-phi" in d.rules
    assert engine.decide(ctx("bob", functions=shadow),
                         "SELECT pg_catalog.upper(name) FROM departments").allowed


def test_implicit_casts_run_on_every_statement(engine: Engine, ctx: MakeCtx) -> None:
    cast = build_functions([("f", "public", "sneaky", "f", "plpgsql", "BEGIN END"),
                            ("c", "public", "mytext", "i", "public", "sneaky")])
    assert not engine.decide(ctx("bob", functions=cast), "SELECT 1").allowed


def test_row_security_policy_functions_run_on_reads(engine: Engine, ctx: MakeCtx) -> None:
    policy = build_functions([("f", "public", "gate", "f", "plpgsql", "BEGIN END"),
                              ("v", "public", "departments", "f", "public", "gate")])
    assert not engine.decide(ctx("bob", functions=policy),
                             "SELECT * FROM departments WHERE id = 1").allowed


def test_bodies() -> None:
    body = function_body("f", "sql", "SELECT * FROM patients WHERE id = $1")
    assert body.relations == (PATIENTS,) and not body.exports and body.opaque is None
    assert function_body("f", "sql", "SELECT * FROM patients").exports == (PATIENTS,)
    assert function_body("f", "plpgsql", "BEGIN END").opaque == "language plpgsql"
    assert function_body("f", "c", "x").opaque == "language c"
    assert function_body("f", "sql", "SELEC oops").opaque is not None
    assert function_body("f", "sql", "SELECT query FROM pg_stat_activity").opaque is not None
    danger = function_body("f", "sql", "SELECT pg_read_file('/etc/passwd')")
    assert danger.dangerous
    assert function_body("a", "internal", "aggregate_dummy").opaque is None
    atomic = function_body("f", "sql", "BEGIN ATOMIC\n INSERT INTO log VALUES (1);\n"
                                       " SELECT mrn FROM patients WHERE id = 1;\nEND")
    assert TableRef("log") in atomic.relations and PATIENTS in atomic.relations


def test_dangerous_calls_inside_bodies_make_the_call_dangerous(engine: Engine,
                                                               ctx: MakeCtx) -> None:
    reader = build_functions([("f", "public", "peek", "f", "sql",
                               "SELECT pg_read_file('/etc/passwd')")])
    d = engine.decide(ctx("bob", functions=reader), "SELECT peek()")
    assert not d.allowed and d.dangerous


def test_deep_and_cyclic_catalogs_stay_bounded(engine: Engine, ctx: MakeCtx) -> None:
    chain = [("f", "public", f"f{i}", "f", "sql", f"SELECT f{i + 1}()") for i in range(3000)]
    chain.append(("f", "public", "f3000", "f", "sql", "SELECT f0()"))
    d = engine.decide(ctx("bob", functions=build_functions(chain)), "SELECT f0()")
    assert d.allowed  # 3001 functions, one cycle, no PHI
