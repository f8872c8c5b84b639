"""Catalogs that show PHI of other tables: planner statistics and other sessions' statements.

``pg_stats`` (and ``pg_statistic``, ``pg_statistic_ext_data``, ``pg_stats_ext``,
``pg_stats_ext_exprs``) hold real column values of every analysed table: most common values and
histogram bounds. ``pg_stat_activity``, ``pg_stat_statements`` and the functions behind them show
the text of other sessions' statements, PHI literals included, and every identity shares the one
upstream service role. A statement reading any of them (by any schema, or through a view of
them) touches every PHI table of the database — unless, for statistics, its WHERE names only
tables (``tablename = 'departments'``, ``tablename IN (...)``, ``starelid = 'x'::regclass``),
in which case it touches those. ``pg_statistic_ext`` holds only the definitions of extended
statistics (no values; psql's ``\\d+`` reads it), so it is not listed.

``classify`` calls ``system_reads`` on the tree; ``PhiMatcher`` users call ``system_phi`` with
the database's PHI patterns and view dependencies.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping

from policies.phi import PhiMatcher
from policies.sqltree import (
    NOT_CONSTANT,
    Json,
    constant,
    find,
    names_to_ref,
    string_list,
    unwrap,
)
from policies.statement import Statement, SystemRead, TableRef
from policies.steps import Steps

STATISTICS = frozenset(
    {"pg_statistic", "pg_statistic_ext_data", "pg_stats", "pg_stats_ext", "pg_stats_ext_exprs"}
)
ACTIVITY = frozenset({"pg_stat_activity", "pg_stat_statements", "pg_stat_monitor"})
ACTIVITY_FUNCTIONS = frozenset(
    {"pg_stat_get_activity", "pg_stat_get_backend_activity", "pg_stat_statements",
     "pg_stat_monitor", "pg_stat_monitor_internal"}
)  # fmt: skip
_SYSTEM = STATISTICS | ACTIVITY
# A user's view of pg_stats or pg_stat_activity reads it too: found by the same walk as PHI.
_SYSTEM_MATCHER = PhiMatcher(f"*.*.{name}" for name in sorted(_SYSTEM))
_STATISTICS_MATCHER = PhiMatcher(f"*.*.{name}" for name in sorted(STATISTICS))
_TABLE_COLUMNS = frozenset({"tablename", "starelid", "relname"})
_SCHEMA_COLUMNS = frozenset({"schemaname"})


def system_reads(node: Json) -> tuple[SystemRead, ...]:
    """Reads of statistics and activity catalogs in one parsed statement."""
    out: dict[SystemRead, None] = {}
    filtered: set[int] = set()
    for level in find(node, "SelectStmt"):
        only = _filter_tables(level.get("whereClause"))
        for range_var in _from_relations(level.get("fromClause")):
            name = range_var.get("relname", "").lower()
            if name in STATISTICS and only is not None and _single_from(level):
                out[SystemRead(name, only)] = None
                filtered.add(id(range_var))
    for range_var in find(node, "RangeVar"):
        name = range_var.get("relname", "").lower()
        if (name in STATISTICS or name in ACTIVITY) and id(range_var) not in filtered:
            out[SystemRead(name)] = None
    for call in find(node, "FuncCall"):
        names = string_list(call.get("funcname"))
        if names and names[-1].lower() in ACTIVITY_FUNCTIONS:
            out[SystemRead(f"{names[-1].lower()}()")] = None
    return tuple(out)


def system_phi(matcher: PhiMatcher, database: str, stmt: Statement,
               views: Mapping[str, Collection[str]], steps: Steps, *,
               statistics_only: bool = False) -> list[str]:
    """The PHI a statement reads through catalogs: table names, or every PHI pattern.

    With ``statistics_only`` only reads of planner statistics count: each of their rows holds
    up to ``default_statistics_target`` values of a column, so they are bulk exports."""
    system = _STATISTICS_MATCHER if statistics_only else _SYSTEM_MATCHER
    reads = [r for r in stmt.system_reads if not statistics_only or r.source in STATISTICS]
    others = [r for r in stmt.tables if r.name.lower() not in _SYSTEM]
    # Its own budget of the same size, so the PHI walk's budget keeps meaning what it says.
    if others and system.touched(database, others, views, Steps(steps.limit)):
        reads.append(SystemRead("a view of a statistics or activity catalog"))
    if not reads:
        return []
    everything = matcher.every(database)
    out: dict[str, None] = {}
    for read in reads:
        if read.only is None:
            return everything
        out.update(dict.fromkeys(matcher.touched(database, read.only, views, steps)))
    return list(out)


def _single_from(level: dict[str, Json]) -> bool:
    """The WHERE filters the statistics only when they are the level's only relation."""
    items = level.get("fromClause") or []
    return len(items) == 1 and unwrap(items[0])[0] == "RangeVar"


def _from_relations(items: Json) -> Iterator[dict[str, Json]]:
    for item in items or ():
        kind, body = unwrap(item)
        if kind == "RangeVar":
            yield body


def _filter_tables(where: Json) -> tuple[TableRef, ...] | None:
    """Tables an AND-ed ``tablename = 'x'`` / ``IN (...)`` names; None when there is none."""
    tables: list[str] = []
    schema: str | None = None
    for conjunct in _conjuncts(where):
        kind, expr = unwrap(conjunct)
        if kind != "A_Expr":
            continue
        column = _column(expr.get("lexpr"))
        values = _values(expr)
        if column in _TABLE_COLUMNS and values is not None:
            tables = values if not tables else [t for t in tables if t in values]
            if not tables:
                return None
        elif column in _SCHEMA_COLUMNS and values is not None and len(values) == 1:
            schema = values[0]
    if not tables:
        return None
    refs = [names_to_ref(tuple(t.split("."))) for t in tables]
    if any(r is None for r in refs):
        return None
    return tuple(TableRef(r.name, r.schema or schema) for r in refs if r is not None)


def _conjuncts(where: Json) -> Iterator[Json]:
    kind, body = unwrap(where)
    if kind == "BoolExpr" and body.get("boolop") == "AND_EXPR":
        for arg in body.get("args", ()):
            yield from _conjuncts(arg)
    elif kind:
        yield where


def _column(node: Json) -> str | None:
    kind, body = unwrap(node)
    if kind == "TypeCast":
        return _column(body.get("arg"))
    if kind != "ColumnRef":
        return None
    names = string_list(body.get("fields"))
    return names[-1].lower() if names else None


def _values(expr: dict[str, Json]) -> list[str] | None:
    """The constant text(s) of ``= 'x'`` or ``IN ('x', 'y')``; None for anything else."""
    op = string_list(expr.get("name"))
    if expr.get("kind") == "AEXPR_OP" and op == ("=",):
        items = [expr.get("rexpr")]
    elif expr.get("kind") == "AEXPR_IN" and op == ("=",):
        items = unwrap(expr.get("rexpr"))[1].get("items") or []
        if not isinstance(expr.get("rexpr"), dict) or "List" not in expr["rexpr"]:
            return None
    else:
        return None
    out = []
    for item in items:
        value = constant(item)
        if value is NOT_CONSTANT or not isinstance(value, str) or not value or \
                value.isdigit():
            return None  # an oid, a parameter or an expression: cannot tell which table
        out.append(value.lower())
    return out
