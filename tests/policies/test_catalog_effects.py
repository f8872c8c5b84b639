"""Which DDL may change what the policy reads from the catalog (policies/catalog_effects.py);
end to end, with an insider's shapes, in tests/e2e/test_neutral_ddl_e2e.py."""

from __future__ import annotations

import pytest

from policies.catalog_effects import any_changes_catalog, changes_catalog
from policies.classify import classify
from policies.functions import NOTHING_KNOWN, build_functions

QUIET = build_functions([("b", "pg_catalog", "lower", "", "", "")])
TRIGGERED = build_functions([("f", "public", "audit", "f", "plpgsql", "BEGIN END"),
                             ("w", "public", "notes", "f", "public", "audit")])
EVENTS = build_functions([("e", "", "on_ddl", "ddl_command_end", "", "")])


def _changes(sql: str, functions: object = QUIET) -> bool:
    (statement,) = classify(sql).statements
    return changes_catalog(statement, functions)  # type: ignore[arg-type]


@pytest.mark.parametrize("sql", [
    "TRUNCATE notes", "TRUNCATE a, b RESTART IDENTITY", "CREATE INDEX ON notes (a, b DESC)",
    "CREATE UNIQUE INDEX CONCURRENTLY i ON s.notes (a) INCLUDE (b)", "DROP INDEX i, j",
    "COMMENT ON TABLE notes IS 'x'", "ANALYZE notes", "VACUUM notes", "SELECT 1",
    "GRANT SELECT ON notes TO PUBLIC",  # DCL: no relation, view or function changes
])
def test_what_changes_nothing_the_policy_reads(sql: str) -> None:
    assert not _changes(sql)


@pytest.mark.parametrize("sql", [
    "TRUNCATE notes CASCADE", "CREATE INDEX ON notes (lower(a))", "CREATE INDEX ON notes ((a))",
    "CREATE INDEX ON notes (a) WHERE a > 0", "DROP INDEX i CASCADE", "DROP TABLE notes",
    "CREATE TEMP TABLE t (a int)", "CREATE TABLE t AS SELECT 1", "ALTER TABLE t ADD c int",
    "CREATE TRIGGER x AFTER TRUNCATE ON t EXECUTE FUNCTION f()", "DO 'BEGIN END'", "CALL p()",
    "CREATE RULE r AS ON INSERT TO t DO ALSO NOTHING",
])
def test_what_may_change_it(sql: str) -> None:
    assert _changes(sql)


def test_user_code_run_with_it_or_an_unread_catalog_makes_it_count() -> None:
    assert _changes("TRUNCATE notes", TRIGGERED)  # a trigger anywhere may be a TRUNCATE one
    assert not _changes("CREATE INDEX ON notes (a)", TRIGGERED)  # no trigger runs on it
    assert _changes("COMMENT ON TABLE notes IS 'x'", EVENTS)
    assert _changes("TRUNCATE notes", NOTHING_KNOWN)  # not read, or the session's own DDL
    assert _changes("TRUNCATE notes", None)  # an offline preview


def test_a_decision_counts_unless_every_ddl_statement_is_neutral() -> None:
    statements = classify("TRUNCATE notes; CREATE TABLE t ()").statements
    assert any_changes_catalog({"ddl", "delete"}, statements, QUIET)
    assert not any_changes_catalog({"ddl", "delete"}, statements[:1], QUIET)
    assert any_changes_catalog({"ddl"}, (), QUIET)  # DDL from elsewhere (a prepared name)
    assert not any_changes_catalog({"select"}, (), QUIET)
