"""Copies of PHI into relations that are not PHI tables are bulk exports, whatever the filter.

The break-glass identity (``oncall`` with a reason) may write and read PHI; ``no-bulk-export``
still refuses every write that puts values read from a PHI table into a relation that is not
one (it returns nothing, so no row limit or budget would count it, and the copy would read as
no PHI afterwards). Copies between PHI tables, writes with no PHI source, and DELETE … USING
stay allowed.
"""

from __future__ import annotations

import pytest

from policies.engine import Engine
from policies.functions import build_functions
from policies.model import Decision
from policies.views import Unsettled

from .conftest import MakeCtx
from .functions_catalog import ROWS, catalog

VIEWS = {
    "patient_directory": frozenset({"public.patients"}),
    "public.patient_directory": frozenset({"public.patients"}),
    "department_names": frozenset({"public.departments"}),  # a view of no PHI table
    "mv": frozenset({"public.patients"}),  # a materialized view: the catalog lists its source
}

COPIES = [
    ("INSERT INTO leak SELECT mrn FROM patients WHERE id < 400", "leak", "insert"),
    ("INSERT INTO public.leak SELECT mrn FROM patients WHERE id < 400 LIMIT 10",
     "public.leak", "insert"),
    ("INSERT INTO leak SELECT mrn FROM clinic.public.lab_results WHERE id = 1", "leak", "insert"),
    ("CREATE TABLE leak AS SELECT mrn FROM patients WHERE id < 400", "leak", "create table as"),
    ("SELECT mrn INTO leak FROM patients WHERE id < 400", "leak", "select into"),
    ("SELECT mrn INTO TEMP leak FROM patients WHERE id = 1", "pg_temp.leak", "select into"),
    ("UPDATE notes SET body = p.ssn FROM patients p WHERE notes.id = p.id", "notes", "update"),
    ("UPDATE notes SET body = (SELECT ssn FROM patients WHERE id = 1) WHERE id = 1",
     "notes", "update"),
    ("MERGE INTO notes n USING patients p ON n.id = p.id "
     "WHEN MATCHED THEN UPDATE SET body = p.ssn", "notes", "merge"),
    ("MERGE INTO notes n USING (SELECT * FROM patients WHERE id < 400) p ON n.id = p.id "
     "WHEN NOT MATCHED THEN INSERT VALUES (p.id, p.ssn)", "notes", "merge"),
    ("INSERT INTO leak SELECT mrn FROM patient_directory WHERE id < 400", "leak", "insert"),
    ("WITH x AS (SELECT mrn FROM patients WHERE id < 400) INSERT INTO leak SELECT * FROM x",
     "leak", "insert"),
    ("INSERT INTO leak SELECT * FROM (SELECT mrn FROM patients WHERE id < 400) s",
     "leak", "insert"),
    ("INSERT INTO leak SELECT name FROM departments WHERE id = 1 "
     "UNION SELECT mrn FROM patients WHERE id < 400", "leak", "insert"),
    ("INSERT INTO leak VALUES ((SELECT ssn FROM patients WHERE id = 1))", "leak", "insert"),
    ("INSERT INTO leak (id, v) SELECT id, ssn FROM patients WHERE id = 1 "
     "ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v", "leak", "insert"),
    ("INSERT INTO leak VALUES (1, 'x') "
     "ON CONFLICT (id) DO UPDATE SET v = (SELECT ssn FROM patients WHERE id = 1)",
     "leak", "insert"),
    ("WITH w AS (INSERT INTO leak SELECT mrn FROM patients WHERE id < 400 RETURNING 1) "
     "SELECT count(*) FROM w", "leak", "insert"),
    ("WITH u AS (UPDATE patients SET name = name WHERE id < 400 RETURNING ssn) "
     "INSERT INTO leak SELECT ssn FROM u", "leak", "insert"),
    # a PHI table's name in another schema, qualified, is not the PHI table
    ("INSERT INTO archive.patients SELECT * FROM public.patients WHERE id < 400",
     "archive.patients", "insert"),
    # a view of a table that is not PHI: the rows land in that table
    ("INSERT INTO department_names SELECT mrn FROM patients WHERE id = 1",
     "department_names", "insert"),
    ("EXPLAIN ANALYZE INSERT INTO leak SELECT mrn FROM patients WHERE id = 1", "leak", "insert"),
    ("PREPARE q AS INSERT INTO leak SELECT mrn FROM patients WHERE id < 400", "leak", "insert"),
    ("PREPARE p AS SELECT mrn FROM patients WHERE id < 400; CREATE TABLE leak AS EXECUTE p",
     "leak", "create table as"),
]

NOT_COPIES = [
    # between PHI tables: the target is protected as the source is
    "INSERT INTO encounters (patient_id) SELECT id FROM patients WHERE id < 400",
    "INSERT INTO public.encounters (patient_id) SELECT id FROM patients WHERE id < 400",
    "INSERT INTO lab_archive SELECT * FROM lab_results WHERE id < 400",
    "UPDATE encounters SET note = p.ssn FROM patients p WHERE encounters.patient_id = p.id",
    "MERGE INTO encounters e USING patients p ON e.patient_id = p.id "
    "WHEN MATCHED THEN UPDATE SET note = p.ssn",
    "INSERT INTO patient_directory (mrn) SELECT mrn FROM patients WHERE id < 400",  # its view
    # no PHI source
    "INSERT INTO leak SELECT name FROM departments WHERE id < 400",
    "CREATE TABLE leak AS SELECT * FROM departments",
    "INSERT INTO notes (body) VALUES ('x')",
    "UPDATE notes SET body = 'x' WHERE id = 1",
    # writes no values of the PHI table anywhere
    "DELETE FROM notes USING patients p WHERE notes.id = p.id",
    "MERGE INTO notes n USING patients p ON n.id = p.id WHEN MATCHED THEN DELETE",
    "CREATE TABLE leak AS SELECT mrn FROM patients WHERE id < 400 WITH NO DATA",
    # a materialized view's reads count as reads of its source (through the catalog)
    "CREATE MATERIALIZED VIEW mv2 AS SELECT mrn FROM patients WHERE id < 400",
    "EXPLAIN INSERT INTO leak SELECT mrn FROM patients WHERE id < 400",  # only planned
    "SELECT mrn FROM patients WHERE id < 400",
]


def _oncall(engine: Engine, ctx: MakeCtx, sql: str, **overrides: object) -> Decision:
    values: dict[str, object] = {"reason": "INC-1", "view_dependencies": VIEWS, **overrides}
    return engine.decide(ctx("oncall", **values), sql)


@pytest.mark.parametrize(("sql", "target", "via"), COPIES, ids=[c[0][:60] for c in COPIES])
def test_copy_into_a_relation_that_is_not_phi_is_an_export(
        engine: Engine, ctx: MakeCtx, sql: str, target: str, via: str) -> None:
    d = _oncall(engine, ctx, sql)
    assert not d.allowed and "no-bulk-export" in d.rules, d.reason
    assert d.bulk_export and d.phi_tables
    expected = f"copy into {target}, which is not a PHI table ({via})"
    assert expected in d.export_via, d.export_via
    assert d.reason.startswith("phigate: ") and expected in d.reason
    assert d.hint is not None and d.hint.startswith("a copy of PHI reads as no PHI"), d.hint


@pytest.mark.parametrize("sql", NOT_COPIES)
def test_writes_that_copy_no_phi_out_are_unaffected(engine: Engine, ctx: MakeCtx,
                                                    sql: str) -> None:
    d = _oncall(engine, ctx, sql)
    assert d.allowed, d.reason
    assert not d.bulk_export and not d.export_via


def test_a_copy_names_every_phi_source(engine: Engine, ctx: MakeCtx) -> None:
    d = _oncall(engine, ctx, "INSERT INTO leak SELECT p.mrn, e.note FROM patients p "
                "JOIN encounters e ON e.patient_id = p.id WHERE p.id < 400")
    assert not d.allowed and "no-bulk-export" in d.rules
    assert "bulk export of PHI (patients, encounters) by copy into leak" in d.reason, d.reason


def test_a_materialized_view_reads_as_its_source(engine: Engine, ctx: MakeCtx) -> None:
    d = _oncall(engine, ctx, "SELECT * FROM mv")
    assert not d.allowed and d.bulk_export and "public.patients" in d.phi_tables


def test_a_filtered_copy_of_a_copy_is_still_caught_through_the_view(
        engine: Engine, ctx: MakeCtx) -> None:
    d = _oncall(engine, ctx, "CREATE TABLE leak AS SELECT * FROM mv WHERE id < 10")
    assert not d.allowed and "copy into leak, which is not a PHI table (create table as)" \
        in d.export_via


def test_unsettled_views_protect_no_target_but_phi_tables(engine: Engine, ctx: MakeCtx) -> None:
    # After DDL in the same string the catalog cannot vouch for any view: a target that is no
    # PHI table by name is not protected, even though every relation reads as all PHI.
    d = _oncall(engine, ctx, "CREATE TABLE leak (v text); "
                "INSERT INTO leak SELECT name FROM departments WHERE id = 1")
    assert not d.allowed and d.bulk_export
    unsettled = Unsettled(VIEWS, "DDL earlier in this query string")
    d = _oncall(engine, ctx, "INSERT INTO patient_directory (mrn) SELECT mrn FROM patients "
                "WHERE id = 1", view_dependencies=unsettled)
    assert not d.allowed and "copy into patient_directory" in "; ".join(d.export_via)
    d = _oncall(engine, ctx, "INSERT INTO public.encounters (patient_id) SELECT id FROM "
                "patients WHERE id = 1", view_dependencies=unsettled)
    assert not any("copy into" in via for via in d.export_via), d.export_via  # a PHI table
    # a bare name may mean a same-named table this transaction made earlier in the path
    d = _oncall(engine, ctx, "INSERT INTO encounters (patient_id) SELECT id FROM patients "
                "WHERE id = 1", view_dependencies=unsettled)
    assert "copy into encounters, which is not a PHI table (insert)" in d.export_via


def test_a_function_that_reads_phi_feeds_a_copy(engine: Engine, ctx: MakeCtx) -> None:
    # get_mrn's SQL body reads patients (filtered): its value lands in leak
    d = _oncall(engine, ctx, "INSERT INTO leak SELECT get_mrn(7)", functions=catalog())
    assert not d.allowed and "copy into leak, which is not a PHI table (insert)" in d.export_via
    allowed = _oncall(engine, ctx, "INSERT INTO leak SELECT dept_name(1)", functions=catalog())
    assert allowed.allowed, allowed.reason


# SQL functions that write (the catalog rows FUNCTIONS_SQL would return for them)
WRITERS = build_functions(ROWS + (
    ("f", "public", "copy_sql", "f", "sql",
     "INSERT INTO leak SELECT mrn FROM patients WHERE id < 400"),
    ("f", "public", "wrap_copy", "f", "sql", "SELECT public.copy_sql()"),
    ("f", "public", "archive_sql", "f", "sql",
     "INSERT INTO encounters (patient_id) SELECT id FROM patients WHERE id = 1"),
    ("f", "public", "log_sql", "f", "sql", "INSERT INTO notes (body) VALUES ('seen')"),
))


@pytest.mark.parametrize(("sql", "function"), [
    ("SELECT copy_sql()", "copy_sql"),
    ("SELECT wrap_copy()", "public.copy_sql"),  # through another function's body
    # conservative: what the statement reads could reach the body through its arguments
    ("SELECT mrn, log_sql() FROM patients WHERE id = 1", None),
])
def test_a_sql_function_that_copies_phi_is_an_export(engine: Engine, ctx: MakeCtx, sql: str,
                                                      function: str | None) -> None:
    d = _oncall(engine, ctx, sql, functions=WRITERS)
    assert not d.allowed and "no-bulk-export" in d.rules and d.bulk_export, d.reason
    target = "leak" if function else "notes"
    how = f"insert in function {function or 'log_sql'}"
    assert f"copy into {target}, which is not a PHI table ({how})" in d.export_via


@pytest.mark.parametrize("sql", ["SELECT archive_sql()", "SELECT log_sql()"])
def test_sql_functions_that_copy_no_phi_out_are_unaffected(engine: Engine, ctx: MakeCtx,
                                                           sql: str) -> None:
    d = _oncall(engine, ctx, sql, functions=WRITERS)
    assert d.allowed and not d.bulk_export, d.reason


def test_engineers_are_still_refused_for_phi_first(engine: Engine, ctx: MakeCtx) -> None:
    d = engine.decide(ctx("bob"), "INSERT INTO scratch SELECT mrn FROM patients WHERE id = 1")
    assert not d.allowed and d.rules[0] == "engineers-no-phi" and d.bulk_export
