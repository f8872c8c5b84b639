"""The classifier over the corpus, and the facts the engine relies on for tricky statements."""

from __future__ import annotations

import pytest

from policies.classify import classify
from policies.statement import SessionEffect
from tests.policies.corpus import CORPUS, Entry


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 150
    assert len({e.sql for e in CORPUS}) == len(CORPUS), "duplicate corpus entries"


@pytest.mark.parametrize("entry", CORPUS, ids=[e.sql[:60] for e in CORPUS])
def test_corpus(entry: Entry) -> None:
    result = classify(entry.sql)
    if entry.error:
        assert result.error is not None
        assert result.statements == ()
        return
    assert result.error is None
    assert len(result.statements) == entry.statements
    classes = {c for s in result.statements for c in s.classes}
    tables = {str(t) for s in result.statements for t in s.tables}
    assert classes == entry.classes
    assert tables == entry.tables
    assert any(s.dangerous for s in result.statements) == entry.dangerous
    export = any(s.copy_to or any(f.limit is None for f in s.exports) for s in result.statements)
    assert export == entry.export


def test_statement_text_is_sliced_per_statement() -> None:
    result = classify("SELECT 'é'; SET phigate.reason = 'INC-1' ;  DELETE FROM x")
    assert [s.text for s in result.statements] == [
        "SELECT 'é'", "SET phigate.reason = 'INC-1'", "DELETE FROM x"]


@pytest.mark.parametrize(("sql", "value"), [
    ("SET phigate.reason = 'INC-1234'", "INC-1234"),
    ("SET LOCAL phigate.reason TO 'ticket 7'", "ticket 7"),
    ("set PHIGATE.REASON = 'x'", "x"),
])
def test_reason_setting_is_recognised(sql: str, value: str) -> None:
    (stmt,) = classify(sql).statements
    assert stmt.effect == SessionEffect("set_reason", value=value)
    assert stmt.command == "SET phigate.reason"


@pytest.mark.parametrize("sql", ["RESET phigate.reason", "SET phigate.reason TO DEFAULT",
                                 "SET phigate.reason = ''"])
def test_reason_reset(sql: str) -> None:
    (stmt,) = classify(sql).statements
    assert stmt.effect is not None and stmt.effect.kind == "reset_reason"


def test_set_config_of_reason_is_not_consumed() -> None:
    (stmt,) = classify("SELECT set_config('phigate.reason', 'x', false)").statements
    assert stmt.effect is None


def test_prepare_records_the_inner_statement() -> None:
    (stmt,) = classify("PREPARE q(int) AS DELETE FROM patients WHERE id = $1").statements
    assert stmt.effect is not None and stmt.effect.kind == "prepare"
    assert stmt.effect.name == "q"
    assert stmt.effect.statement is not None
    assert stmt.effect.statement.classes == {"delete"}


def test_declare_records_the_cursor_and_fetch_names_it() -> None:
    declare, fetch = classify("DECLARE c1 CURSOR FOR SELECT * FROM patients; "
                              "FETCH 10 FROM c1").statements
    assert declare.effect is not None and declare.effect.kind == "declare"
    assert declare.effect.name == "c1"
    assert fetch.fetches == "c1"


@pytest.mark.parametrize(("sql", "kind", "name"), [
    ("CLOSE c", "close", "c"), ("CLOSE ALL", "close", None),
    ("DEALLOCATE q", "deallocate", "q"), ("DEALLOCATE ALL", "deallocate", None),
    ("DISCARD ALL", "discard_all", None),
])
def test_session_effects(sql: str, kind: str, name: str | None) -> None:
    (stmt,) = classify(sql).statements
    assert stmt.effect == SessionEffect(kind, name)  # type: ignore[arg-type]


def test_explain_of_execute_is_marked_plan_only() -> None:
    (plain,) = classify("EXPLAIN EXECUTE q").statements
    (analyze,) = classify("EXPLAIN ANALYZE EXECUTE q").statements
    assert plain.executes == "q" and plain.explain_only
    assert analyze.executes == "q" and not analyze.explain_only


def test_shape_facts() -> None:
    (stmt,) = classify("SELECT count(*) FROM patients WHERE id > 3 LIMIT 7").statements
    assert stmt.shape is not None
    assert (stmt.shape.has_where, stmt.shape.limit, stmt.shape.aggregate_only) == (True, 7, True)


def test_limit_is_kept_per_flow() -> None:
    (stmt,) = classify("SELECT * FROM (SELECT * FROM patients LIMIT 900) s LIMIT 20").statements
    assert [(str(f.table), f.limit) for f in stmt.exports] == [("patients", 20)]
    (stmt,) = classify("DECLARE c CURSOR FOR SELECT * FROM encounters LIMIT 1000").statements
    assert [(f.via, f.limit) for f in stmt.exports] == [("cursor", 1000)]


def test_deep_nesting_fails_closed() -> None:
    sql = "SELECT " + "(" * 5000 + "1" + ")" * 5000
    result = classify(sql)
    assert result.error is not None or result.statements


def test_functions_are_listed() -> None:
    (stmt,) = classify("SELECT lower(name), pg_catalog.now() FROM patients WHERE id = 1"
                       ).statements
    assert set(stmt.functions) == {"lower", "pg_catalog.now"}
