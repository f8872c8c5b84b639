"""Rows that carry several PHI rows count as that many toward max_rows."""

from __future__ import annotations

import json

import pytest
from pglast import parser

from policies.engine import Engine
from policies.sqltree import unwrap
from policies.weights import row_sources

from .conftest import MakeCtx

# (statement, the weight of its rows for the clinic policy: PHI sources per row)
CASES = [
    ("SELECT mrn FROM patients WHERE id = 1", 1),
    ("SELECT a.mrn, b.mrn FROM patients a JOIN patients b ON b.id = a.id + 1 WHERE a.id > 0", 2),
    ("SELECT a.mrn FROM patients a JOIN patients b ON b.id = a.id WHERE a.id > 0", 1),
    ("SELECT * FROM patients a, patients b WHERE a.id = b.id + 1", 2),
    ("SELECT a.*, b.name FROM patients a, patients b, patients c WHERE a.id = 1", 2),
    ("SELECT a, b FROM patients a, patients b WHERE a.id = b.id + 1", 2),
    ("SELECT (a).ssn, (b).ssn FROM patients a, patients b WHERE a.id = b.id + 1", 2),
    ("SELECT ssn, name FROM patients a, departments d WHERE a.id = d.id", 1),
    ("SELECT e.*, p.name FROM encounters e JOIN patients p ON p.id = e.patient_id "
     "WHERE p.id = 7", 2),
    ("SELECT j.* FROM (patients a JOIN patients b ON b.id = a.id + 1) AS j WHERE a.id > 0", 2),
    ("SELECT s.x, s.y FROM (SELECT a.ssn x, b.ssn y FROM patients a, patients b "
     "WHERE a.id = b.id + 1) s", 2),
    ("WITH j AS (SELECT a.ssn x, b.ssn y FROM patients a, patients b WHERE a.id = b.id + 1) "
     "SELECT * FROM j", 2),
    ("SELECT p.ssn, (SELECT q.ssn FROM patients q WHERE q.id = p.id + 1) FROM patients p "
     "WHERE p.id > 0", 2),
    ("SELECT p.ssn FROM patients p WHERE EXISTS (SELECT 1 FROM patients q WHERE q.id = p.id)",
     1),
    ("SELECT a.ssn FROM patients a UNION ALL SELECT b.ssn FROM patients b", 1),
    ("SELECT a.ssn, b.ssn FROM patients a, patients b WHERE a.id = 1 UNION ALL "
     "SELECT ssn, ssn FROM patients WHERE id = 2", 2),
    ("SELECT count(*) FROM patients a, patients b", 1),
    ("SELECT a.sex, count(*) FROM patients a, patients b GROUP BY a.sex", 1),
    ("SELECT d.name, x.name FROM departments d, departments x", 1),
]


def _sources(sql: str) -> object:
    tree = json.loads(parser.parse_sql_json(sql))
    return row_sources(unwrap(tree["stmts"][0]["stmt"])[1])


@pytest.mark.parametrize(("sql", "weight"), CASES, ids=[c[0][:60] for c in CASES])
def test_weights(engine: Engine, ctx: MakeCtx, sql: str, weight: int) -> None:
    decision = engine.decide(ctx("oncall", reason="INC-1"), sql)
    assert decision.row_weight == weight, (decision.reason, _sources(sql))


def test_max_rows_counts_every_phi_row_a_row_carries(engine: Engine, ctx: MakeCtx) -> None:
    self_join = "SELECT a.ssn, b.ssn FROM patients a JOIN patients b ON b.id = a.id + 1 " \
                "WHERE a.id > 0"
    d = engine.decide(ctx("alice"), self_join)
    assert d.allowed and d.row_weight == 2 and d.max_rows == 250  # clinicians: 500
    d = engine.decide(ctx("alice"), "SELECT a.ssn FROM patients a JOIN patients b "
                                    "ON b.id = a.id WHERE a.id > 0")
    assert d.allowed and d.row_weight == 1 and d.max_rows == 500
    triple = "SELECT a.ssn, b.ssn, c.ssn FROM patients a, patients b, patients c WHERE a.id = 1"
    d = engine.decide(ctx("alice"), triple)
    assert d.max_rows == 166 and d.row_weight == 3


def test_a_cursor_and_a_prepared_statement_keep_the_weight(engine: Engine,
                                                           ctx: MakeCtx) -> None:
    sql = "SELECT a.ssn, b.ssn FROM patients a, patients b WHERE a.id = b.id + 1"
    declared = engine.decide(ctx("alice"), f"DECLARE c CURSOR FOR {sql}")
    assert declared.max_rows == 250
    prepared = engine.classify(f"PREPARE q AS {sql}").statements[0]
    assert prepared.effect is not None and prepared.effect.statement is not None
    d = engine.decide(ctx("alice", prepared={"q": prepared.effect.statement}), "EXECUTE q")
    assert d.max_rows == 250 and d.row_weight == 2
