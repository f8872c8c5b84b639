"""Which statements provably change nothing: the parse tree and ``pg_proc.provolatile``.

A statement that changes nothing may run upstream while its journal entry is being made
durable (its answer is held until then; see README "Performance"). Provably means:

* every statement of the query string is a plain read: SELECT, VALUES or TABLE without
  ``INTO``, without a locking clause and without a data-modifying CTE; SHOW; or EXPLAIN
  without ANALYZE;
* every function it names is IMMUTABLE or STABLE in every schema that has one of that name
  (PostgreSQL refuses data changes inside non-volatile functions); an aggregate counts as
  volatile if any of its support functions is; an unknown function is volatile;
* every relation it reads is known to the catalog and is not a foreign table, a table with
  row-level security, or a view that (through other views) calls a volatile function;
* the database has no operator, cast or type whose function is volatile (the parse tree
  does not show those calls).

The gateway runs :data:`BUILTINS_SQL` once per database (again only if a superuser changed
the built-ins) and :data:`VOLATILITY_SQL` at a database's first session and whenever the
catalog's fingerprint moved, and builds a :class:`Volatility` from both with
:func:`build_volatility`. This module only describes and decides; it runs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from policies.fingerprint import (
    BUILTINS_PART_SQL,
    CATALOG_NAMESPACES,
    FUNCTIONS_PART_SQL,
    RELATIONS_SQL,
    SEPARATOR,
)
from policies.model import StatementClass as C
from policies.statement import Statement

# Rows: (kind, schema, name, flag). kind 'f': a function and its effective volatility
# ('i', 's' or 'v'); 'r': a relation and its relkind; 'u': a relation that is unsafe to
# read (foreign, row security, or a view calling a volatile function); 'x': an operator,
# cast or type whose function is volatile (the whole database then uses write-ahead);
# 'fingerprint': the catalog's (policies.fingerprint) as the read found it.
# The functions of one side of CATALOG_NAMESPACES ("IN": the built-ins, or "NOT IN").
_FUNCTIONS = """\
SELECT 'f', n.nspname, p.proname,
       CASE WHEN p.provolatile = 'v' OR EXISTS (
              SELECT 1 FROM pg_catalog.pg_aggregate a
                JOIN pg_catalog.pg_proc s ON s.oid IN (a.aggtransfn, a.aggfinalfn,
                     a.aggcombinefn, a.aggserialfn, a.aggdeserialfn, a.aggmtransfn,
                     a.aggminvtransfn, a.aggmfinalfn)
               WHERE a.aggfnoid = p.oid AND s.provolatile = 'v')
            THEN 'v' ELSE p.provolatile::text END
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE p.pronamespace {side} {namespaces}
"""
# The built-ins' rows (about 3,300, the slow part: read once per database and again only
# when their fingerprint part moves), and a ('fingerprint', part, '', '') row.
BUILTINS_SQL = f"""\
SELECT 'fingerprint', {BUILTINS_PART_SQL}, '', ''
UNION ALL
{_FUNCTIONS.format(side="IN", namespaces=CATALOG_NAMESPACES)}"""
# The rest, with the relations and functions parts of the fingerprint of the state it read.
VOLATILITY_SQL = f"""\
SELECT 'fingerprint', concat_ws('{SEPARATOR}', {RELATIONS_SQL}, {FUNCTIONS_PART_SQL}), '', ''
UNION ALL
{_FUNCTIONS.format(side="NOT IN", namespaces=CATALOG_NAMESPACES)}UNION ALL
SELECT 'r', n.nspname, c.relname, c.relkind::text
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
UNION ALL
SELECT 'u', n.nspname, c.relname, c.relkind::text
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'f' OR c.relrowsecurity
UNION ALL
SELECT DISTINCT 'u', vn.nspname, v.relname, v.relkind::text
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::regclass
                              AND d.objid = r.oid
  JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
  JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
  JOIN pg_catalog.pg_proc p ON d.refclassid = 'pg_catalog.pg_proc'::regclass
                           AND p.oid = d.refobjid
 WHERE p.provolatile = 'v'
UNION ALL
SELECT 'x', '', o.oprname, 'operator'
  FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
 WHERE p.provolatile = 'v'
UNION ALL
SELECT 'x', '', c.oid::text, 'cast'
  FROM pg_catalog.pg_cast c JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc
 WHERE p.provolatile = 'v'
UNION ALL
SELECT 'x', '', t.typname, 'type'
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_proc p
    ON p.oid IN (t.typinput, t.typoutput, t.typreceive, t.typsend)
 WHERE p.provolatile = 'v'
"""

Row = tuple[str, str, str, str]
_READ_COMMANDS = frozenset({"SELECT", "VARIABLE SHOW", "EXPLAIN"})


@dataclass(frozen=True, slots=True)
class Volatility:
    """What the catalog says about one database; names are lower-case, bare and qualified."""

    safe_functions: frozenset[str]
    relations: frozenset[str]
    unsafe_relations: frozenset[str]
    hazards: tuple[str, ...] = ()  # volatile operators, casts or types: no statement is safe


NOTHING_KNOWN = Volatility(frozenset(), frozenset(), frozenset(), ("catalog not read",))


def build_volatility(rows: Iterable[Row]) -> Volatility:
    """Rows of :data:`VOLATILITY_SQL` and :data:`BUILTINS_SQL` → a :class:`Volatility`."""
    volatile: set[str] = set()
    functions: set[str] = set()
    relations: set[str] = set()
    unsafe: set[str] = set()
    hazards: list[str] = []
    for kind, schema, name, flag in rows:
        names = (f"{schema}.{name}".lower(), name.lower())
        if kind == "f":
            functions.update(names)
            if flag == "v":
                volatile.update(names)  # one volatile overload makes the name volatile
        elif kind == "r":
            relations.update(names)
        elif kind == "u":
            unsafe.update(names)
        elif kind == "x":
            hazards.append(f"volatile {flag} {name}")
    return Volatility(frozenset(functions - volatile), frozenset(relations),
                      frozenset(unsafe), tuple(hazards))


def changes_nothing(statements: Iterable[Statement], volatility: Volatility,
                    views: Mapping[str, frozenset[str]]) -> bool:
    """True only if every statement provably reads without changing anything."""
    if volatility.hazards:
        return False
    found = False
    for statement in statements:
        found = True
        if not _plain_read(statement):
            return False
        if any(f.lower() not in volatility.safe_functions for f in statement.functions):
            return False
        for table in statement.tables:
            name = f"{table.schema}.{table.name}" if table.schema else table.name
            if table.catalog is not None or not _safe_relation(name.lower(), volatility,
                                                               views):
                return False
    return found


def _plain_read(statement: Statement) -> bool:
    if statement.command not in _READ_COMMANDS or statement.locks_rows:
        return False
    if statement.command == "EXPLAIN":
        return statement.explain_only  # EXPLAIN without ANALYZE plans, never runs
    if statement.command == "VARIABLE SHOW":
        return statement.classes == {C.SESSION}
    return statement.classes == {C.SELECT} and statement.executes is None \
        and statement.fetches is None and statement.effect is None


def _safe_relation(name: str, volatility: Volatility, views: Mapping[str, frozenset[str]]
                   ) -> bool:
    """Known, safe, and so is everything it reads through views (each visited once)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        if current not in volatility.relations or current in volatility.unsafe_relations:
            return False
        todo.extend(views.get(current, ()))
    return True
