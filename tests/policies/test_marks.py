"""DDL that would leave PHI under a name that reads as no PHI is a bulk export.

The policy knows PHI tables by name, so renaming ``patients``, moving it to another schema,
renaming its schema or database, or cutting a child from its PHI parent would make the same
rows readable in bulk as no PHI. ``no-bulk-export`` refuses each for the break-glass identity
(which may run DDL), a ``phi: deny`` rule refuses it as PHI access; a new name a pattern still
matches, and DDL on tables without PHI, stay allowed.
"""

from __future__ import annotations

import pytest

from policies.context import RequestContext
from policies.engine import Engine
from policies.functions import build_functions
from policies.loader import load_policy
from policies.views import Unsettled

from .conftest import TUESDAY_10AM, MakeCtx
from .functions_catalog import ROWS

VIEWS = {  # results_2024 is a partition of lab_results; kid a child of patients
    "results_2024": frozenset({"public.lab_results"}),
    "public.results_2024": frozenset({"public.lab_results"}),
    "kid": frozenset({"public.patients"}),
    "public.kid": frozenset({"public.patients"}),
}

STRIPPING = [
    ("ALTER TABLE patients RENAME TO p2", "rename of patients to p2"),
    ("ALTER TABLE public.patients RENAME TO p2", "rename of public.patients to public.p2"),
    ("ALTER TABLE IF EXISTS ONLY patients RENAME TO p2", "rename of patients to p2"),
    ("ALTER VIEW patients RENAME TO p2", "rename of patients to p2"),  # any relation kind
    ("ALTER INDEX pg_temp.patients RENAME TO p2", "rename of pg_temp.patients to pg_temp.p2"),
    ("ALTER TABLE lab_results RENAME TO results", "rename of lab_results to results"),
    ("ALTER TABLE patients SET SCHEMA archive", "set schema of patients to archive.patients"),
    ("ALTER TABLE public.encounters SET SCHEMA archive",
     "set schema of public.encounters to archive.encounters"),
    ("ALTER SCHEMA public RENAME TO old", "rename of schema public to old"),
    ("ALTER DATABASE clinic RENAME TO c2", "rename of database clinic to c2"),
    ("ALTER TABLE kid NO INHERIT patients", "no inherit of kid from patients"),
    ("ALTER TABLE lab_results DETACH PARTITION results_2024",
     "detach partition of results_2024 from lab_results"),
    ("ALTER TABLE lab_results DETACH PARTITION results_2024 CONCURRENTLY",
     "detach partition of results_2024 from lab_results"),
    ("BEGIN; ALTER TABLE patients RENAME TO p2; COMMIT", "rename of patients to p2"),
]

KEEPING = [
    "ALTER TABLE lab_results RENAME TO lab_results_2023",  # lab_* still matches
    "ALTER TABLE patients RENAME COLUMN ssn TO social",
    "ALTER TABLE patients RENAME CONSTRAINT c TO d",
    "ALTER TABLE departments RENAME TO units",
    "ALTER TABLE departments SET SCHEMA archive",
    "ALTER SCHEMA archive RENAME TO old_archive",
    "ALTER DATABASE scratch RENAME TO scratch2",
    "ALTER TABLE lab_2023 NO INHERIT lab_results",  # PHI by its own name
    "ALTER TABLE notes NO INHERIT departments",
    "ALTER TABLE departments DETACH PARTITION departments_old",
    "ALTER TABLE kid INHERIT patients",
]


def _oncall(engine: Engine, ctx: MakeCtx, sql: str, **overrides: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = {"reason": "INC-1", "view_dependencies": VIEWS, **overrides}
    return engine.decide(ctx("oncall", **values), sql)


@pytest.mark.parametrize(("sql", "what"), STRIPPING, ids=[s[0] for s in STRIPPING])
def test_ddl_that_strips_the_phi_mark_is_an_export(engine: Engine, ctx: MakeCtx, sql: str,
                                                   what: str) -> None:
    d = _oncall(engine, ctx, sql)
    assert not d.allowed and "no-bulk-export" in d.rules, d.reason
    assert d.bulk_export and d.phi_tables
    assert any(via.startswith(what) for via in d.export_via), d.export_via
    assert what in d.reason
    assert d.hint is not None and "list the new name under phi_tables" in d.hint


@pytest.mark.parametrize("sql", KEEPING)
def test_ddl_that_keeps_the_mark_is_unaffected(engine: Engine, ctx: MakeCtx, sql: str) -> None:
    d = _oncall(engine, ctx, sql)
    assert d.allowed, d.reason
    assert not d.bulk_export


def test_a_schema_rename_names_the_patterns_it_strips(engine: Engine, ctx: MakeCtx) -> None:
    d = _oncall(engine, ctx, "ALTER SCHEMA public RENAME TO old")
    assert set(d.phi_tables) >= {"clinic.public.patients", "clinic.public.lab_*"}, d.phi_tables


def test_cutting_a_child_while_the_catalog_cannot_vouch_is_refused(
        engine: Engine, ctx: MakeCtx) -> None:
    # its PARTITION OF patients may be uncommitted DDL of this very transaction
    unsettled = Unsettled({}, "DDL in flight")
    d = _oncall(engine, ctx, "ALTER TABLE patients DETACH PARTITION fresh",
                view_dependencies=unsettled)
    assert not d.allowed and d.bulk_export, d.reason


def test_phi_deny_rules_refuse_a_rename_of_a_schema_holding_phi(
        engine: Engine, ctx: MakeCtx) -> None:
    # bob may not touch PHI; a schema rename names no table, yet strips every PHI table of it
    d = engine.decide(ctx("bob", now=ctx().now.replace(hour=22)),
                      "ALTER SCHEMA public RENAME TO old")
    assert not d.allowed and "clinic.public.patients" in d.phi_tables, d.reason


# Where a copy's values land: a bare name may mean any schema's relation of that name.
HOMES = {"patients": frozenset({"public", "archive"}), "encounters": frozenset({"public"}),
         "lab_results": frozenset({"public", "pg_temp_3"}),
         "lab_view": frozenset({"public"})}
SHADOW_VIEWS = {**VIEWS, "lab_view": frozenset({"public.notes"}),
                "public.lab_view": frozenset({"public.notes"})}

SHADOWED_COPIES = [
    # archive.patients (no PHI table) may come first in the session's search_path
    ("INSERT INTO patients SELECT * FROM public.patients WHERE id < 400", "patients", "insert"),
    ("UPDATE patients SET ssn = p.ssn FROM public.patients p WHERE p.id = 1", "patients",
     "update"),
    # a new table goes into the search_path's first schema, which need not be public
    ("CREATE TABLE encounters AS SELECT * FROM public.encounters WHERE id < 9", "encounters",
     "create table as"),
    ("SELECT * INTO lab_copy FROM lab_results WHERE id < 9", "lab_copy", "select into"),
    # a view named like a PHI table writes into a table that is none
    ("INSERT INTO lab_view SELECT * FROM lab_results WHERE id < 9", "lab_view", "insert"),
    ("INSERT INTO public.lab_view SELECT * FROM lab_results WHERE id < 9", "public.lab_view",
     "insert"),
]

UNSHADOWED = [
    "INSERT INTO encounters SELECT * FROM public.encounters WHERE id < 400",  # public only
    "INSERT INTO lab_results SELECT * FROM public.lab_results WHERE id < 9",  # or a temp one
    "INSERT INTO public.patients SELECT * FROM public.patients WHERE id < 400",  # qualified
    "CREATE TABLE public.lab_copy AS SELECT * FROM lab_results WHERE id < 9",
    "CREATE TEMP TABLE lab_copy AS SELECT * FROM lab_results WHERE id < 9",
    "SELECT * INTO TEMP patients FROM public.patients WHERE id < 9",
]


@pytest.mark.parametrize(("sql", "target", "via"), SHADOWED_COPIES,
                         ids=[s[0][:50] for s in SHADOWED_COPIES])
def test_a_copy_into_a_name_that_may_mean_no_phi_table_is_an_export(
        engine: Engine, ctx: MakeCtx, sql: str, target: str, via: str) -> None:
    d = _oncall(engine, ctx, sql, relation_homes=HOMES, view_dependencies=SHADOW_VIEWS)
    assert not d.allowed and "no-bulk-export" in d.rules, d.reason
    assert f"copy into {target}, which is not a PHI table ({via})" in d.export_via, d.export_via


@pytest.mark.parametrize("sql", UNSHADOWED)
def test_a_copy_into_names_that_mean_phi_tables_only_is_allowed(
        engine: Engine, ctx: MakeCtx, sql: str) -> None:
    d = _oncall(engine, ctx, sql, relation_homes=HOMES, view_dependencies=SHADOW_VIEWS)
    assert d.allowed, d.reason


def test_a_pattern_for_every_schema_protects_a_bare_new_table() -> None:
    policy = load_policy(
        "phi_tables: [clinic.*.vault, clinic.public.ledger]\n"
        "rules:\n"
        "  - {name: all, allow: [all]}\n"
        "  - {name: no-bulk-export, deny: [bulk_export]}\n", "every.yaml")
    ctx = RequestContext(identity="x", database="clinic", now=TUESDAY_10AM)
    engine = Engine([policy])
    assert engine.decide(ctx, "CREATE TABLE vault AS SELECT * FROM vault WHERE id < 9").allowed
    d = engine.decide(ctx, "CREATE TABLE ledger AS SELECT * FROM ledger WHERE id < 9")
    assert not d.allowed and "copy into ledger" in d.reason, d.reason


RELABELLING = build_functions(ROWS + (
    ("f", "public", "rename_sql", "f", "sql", "ALTER TABLE patients RENAME TO p2"),
    ("f", "public", "move_sql", "f", "sql", "ALTER SCHEMA public RENAME TO old"),
    ("f", "public", "tidy_sql", "f", "sql", "ALTER TABLE departments RENAME TO units"),
))


@pytest.mark.parametrize("sql", ["SELECT rename_sql()", "SELECT move_sql()"])
def test_a_sql_function_that_strips_the_mark_is_an_export(engine: Engine, ctx: MakeCtx,
                                                           sql: str) -> None:
    d = _oncall(engine, ctx, sql, functions=RELABELLING)
    assert not d.allowed and "no-bulk-export" in d.rules and d.bulk_export, d.reason


def test_a_sql_function_that_renames_no_phi_is_unaffected(engine: Engine, ctx: MakeCtx) -> None:
    d = _oncall(engine, ctx, "SELECT tidy_sql()", functions=RELABELLING)
    assert d.allowed, d.reason


RULED = build_functions(ROWS + (
    ("w", "public", "lab_staged", "r", "public", "notes"),  # DO ALSO INSERT INTO notes ...
    ("w", "public", "lab_mirrored", "r", "public", "lab_results"),
))


def test_a_rule_that_writes_the_rows_elsewhere_makes_a_phi_write_a_copy(
        engine: Engine, ctx: MakeCtx) -> None:
    d = _oncall(engine, ctx, "INSERT INTO lab_staged SELECT * FROM lab_results WHERE id < 9",
                functions=RULED)
    assert not d.allowed and "copy into public.notes, which is not a PHI table (insert in " \
        "rule of lab_staged)" in d.export_via, d.export_via
    d = _oncall(engine, ctx, "INSERT INTO lab_mirrored SELECT * FROM lab_results WHERE id < 9",
                functions=RULED)
    assert d.allowed, d.reason


@pytest.mark.parametrize(("base", "allowed"), [("public.notes", False), ("public.patients", True)])
def test_a_long_chain_of_views_as_a_target_costs_steps_not_stack(
        engine: Engine, ctx: MakeCtx, base: str, allowed: bool) -> None:
    chain: dict[str, frozenset[str]] = {f"public.v{i}": frozenset({f"public.v{i + 1}"})
                                        for i in range(5000)}
    chain["public.v5000"] = frozenset({base})
    d = _oncall(engine, ctx, "INSERT INTO public.v0 SELECT * FROM patients WHERE id < 9",
                view_dependencies=chain)
    assert d.allowed is allowed, d.reason
