"""Proving statements read-only against a real catalog (``pg_proc.provolatile``, views, RLS).

``policies.readonly`` decides from the parse tree and what ``VOLATILITY_SQL`` reads from
PostgreSQL; anything it cannot prove keeps strict write-ahead. Each case here is a way a
"SELECT" could change data, and must not be proved read-only.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from policies.classify import classify
from policies.readonly import (
    BUILTINS_SQL,
    NOTHING_KNOWN,
    VOLATILITY_SQL,
    Volatility,
    build_volatility,
    changes_nothing,
)
from policies.views import CATALOG_SQL, build_view_dependencies
from tests.conftest import ClusterInfo

SCHEMA = f"ro_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def catalog(pg_cluster: ClusterInfo) -> tuple[Volatility, dict[str, frozenset[str]]]:
    pg_cluster.cluster.execute(f"""
        CREATE SCHEMA {SCHEMA};
        CREATE TABLE {SCHEMA}.visits (id int, note text);
        CREATE TABLE {SCHEMA}.audit (id int);
        CREATE TABLE {SCHEMA}.guarded (id int);
        ALTER TABLE {SCHEMA}.guarded ENABLE ROW LEVEL SECURITY;
        CREATE SEQUENCE {SCHEMA}.ids;
        CREATE FUNCTION {SCHEMA}.tidy(text) RETURNS text STABLE LANGUAGE sql AS 'SELECT lower($1)';
        CREATE FUNCTION {SCHEMA}.sneaky() RETURNS int VOLATILE LANGUAGE sql
            AS 'INSERT INTO {SCHEMA}.audit VALUES (1) RETURNING id';
        CREATE FUNCTION {SCHEMA}.twice(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1 * 2';
        CREATE FUNCTION {SCHEMA}.twice(text) RETURNS int VOLATILE LANGUAGE sql AS 'SELECT 2';
        CREATE VIEW {SCHEMA}.calm AS SELECT id, {SCHEMA}.tidy(note) FROM {SCHEMA}.visits;
        CREATE VIEW {SCHEMA}.noisy AS SELECT {SCHEMA}.sneaky() AS n;
        CREATE VIEW {SCHEMA}.noisy_again AS SELECT * FROM {SCHEMA}.noisy;
    """, dbname=pg_cluster.database)
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        volatility = build_volatility(conn.execute(VOLATILITY_SQL).fetchall()
                                      + conn.execute(BUILTINS_SQL).fetchall())
        views = build_view_dependencies(conn.execute(CATALOG_SQL).fetchall())
    return volatility, dict(views)


READ_ONLY = [
    "SELECT 1",
    "SELECT id, lower(note), now() FROM {s}.visits WHERE id = 7",
    "SELECT count(*) FROM {s}.visits v JOIN {s}.audit a USING (id)",
    "SELECT {s}.tidy(note) FROM {s}.calm",
    "VALUES (1), (2)",
    "TABLE {s}.visits",
    "SHOW work_mem",
    "EXPLAIN SELECT * FROM {s}.visits",
    "SELECT 1; SELECT 2",
    "SELECT * FROM generate_series(1, 3)",
]
CHANGES_OR_UNPROVEN = [
    "SELECT nextval('{s}.ids')",  # volatile built-in
    "SELECT {s}.sneaky()",  # volatile user function that writes
    "SELECT {s}.twice(1)",  # one volatile overload of the name is enough
    "SELECT * FROM {s}.noisy",  # a view that calls a volatile function
    "SELECT * FROM {s}.noisy_again",  # ... through another view
    "SELECT * FROM {s}.guarded",  # row-level security may call anything
    "SELECT * FROM {s}.visits FOR UPDATE",
    "SELECT * FROM {s}.visits WHERE id IN (SELECT id FROM {s}.audit FOR SHARE)",
    "SELECT * INTO {s}.copy FROM {s}.visits",
    "WITH gone AS (DELETE FROM {s}.audit RETURNING id) SELECT * FROM gone",
    "EXPLAIN ANALYZE SELECT * FROM {s}.noisy",
    "SELECT no_such_function(1)",  # unknown: volatile
    "SELECT * FROM {s}.no_such_table",  # unknown relation
    "SELECT 1; INSERT INTO {s}.audit VALUES (2)",
    "INSERT INTO {s}.audit VALUES (3)",
    "SET work_mem = '8MB'",
    "SELECT pg_advisory_lock(1)",
]


@pytest.mark.parametrize("sql", READ_ONLY)
def test_plain_reads_are_proved_read_only(
        catalog: tuple[Volatility, dict[str, frozenset[str]]], sql: str) -> None:
    volatility, views = catalog
    assert changes_nothing(classify(sql.format(s=SCHEMA)).statements, volatility, views)


@pytest.mark.parametrize("sql", CHANGES_OR_UNPROVEN)
def test_what_may_change_anything_is_not(
        catalog: tuple[Volatility, dict[str, frozenset[str]]], sql: str) -> None:
    volatility, views = catalog
    assert not changes_nothing(classify(sql.format(s=SCHEMA)).statements, volatility, views)


def test_sneaky_really_writes(pg_cluster: ClusterInfo) -> None:
    """The negative cases are real: the volatile function does change data."""
    with psycopg.connect(pg_cluster.dsn(user="postgres",
                                        password=pg_cluster.cluster.superuser_password),
                         autocommit=True) as conn:
        before = conn.execute(f"SELECT count(*) FROM {SCHEMA}.audit").fetchone()
        conn.execute(f"SELECT * FROM {SCHEMA}.noisy_again").fetchall()
        after = conn.execute(f"SELECT count(*) FROM {SCHEMA}.audit").fetchone()
    assert before is not None and after == (before[0] + 1,)


def test_a_volatile_operator_or_cast_proves_nothing(
        catalog: tuple[Volatility, dict[str, frozenset[str]]]) -> None:
    volatility, views = catalog
    hazardous = build_volatility([("x", "", "+++", "operator")])
    assert not changes_nothing(classify("SELECT 1").statements, hazardous, views)
    assert not changes_nothing(classify("SELECT 1").statements, NOTHING_KNOWN, views)
    assert changes_nothing(classify("SELECT 1").statements, volatility, views)
