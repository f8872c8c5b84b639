"""Row-collapsing constructs: where one result row can carry many rows of a table.

``SELECT jsonb_agg(p) FROM patients p WHERE id > 0`` returns one row holding every patient, so
a row limit counts 1. This module finds, in the parse tree, every construct that folds the rows
it reads into fewer result rows, and the rows it reads:

* aggregates other than the summary ones (``policies.pgfunctions``): collecting, ordered-set,
  hypothetical-set, user-defined and unknown functions (a name that is not a built-in may be an
  aggregate, so it counts as one), ``JSON_ARRAYAGG``/``JSON_OBJECTAGG``;
* window functions whose arguments read a column (a frame can carry another row, or the whole
  partition, into every row); ranking windows without column arguments are harmless;
* ``ARRAY(subquery)`` and ``JSON_ARRAY(subquery)``, evaluated once per row of their level;
* recursive CTEs that read a table (they can accumulate rows into one).

A construct consumes the rows of its level's FROM list, each item bounded only by a constant
LIMIT on the subquery (or CTE, or VALUES list) that feeds it; a LIMIT on the level itself limits
groups, not the rows folded into them. A LATERAL item, or a sub-SELECT inside the construct's
arguments, runs once per row, so those are bounded by the product over the whole FROM list.
``classify`` stores the result on the ``Statement``; the engine decides with the PHI tables and
the allowing rule's ``max_rows``.
"""

from __future__ import annotations

import math

from policies.flows import limit_of
from policies.pgfunctions import (
    COLLECTING_AGGREGATES,
    RANKING_WINDOWS,
    SCALAR_FUNCTIONS,
    SUMMARY_AGGREGATES,
)
from policies.sqltree import Json, find, string_list, table_ref, unwrap
from policies.statement import Collapse, CollapseInput, TableRef

_EXPRESSION_FIELDS = ("targetList", "havingClause", "sortClause")  # where aggregates may stand
_CATALOG_SCHEMAS = (None, "pg_catalog")
_UNKNOWN = "function "  # the construct of a call of a name that is not a built-in
_Ctes = dict[str, list[Json]]  # CTE name → the queries of every CTE of that name


def statement_collapses(node: Json) -> tuple[Collapse, ...]:
    """Every row-collapsing construct of one parsed statement, with the rows it reads."""
    ctes = _cte_map(node)
    levels: _Levels = []
    kind, body = unwrap(node)
    if kind == "SelectStmt":
        _select(body, 1, ctes, levels)
    else:
        for key, value in body.items():  # the statement's own query runs once; the rest per row
            _walk(value, 1 if key in ("query", "selectStmt", "withClause") else None, ctes, levels)
    out: list[Collapse] = []
    for level, runs in levels:
        out += _level(level, ctes, runs)
    out += _recursive_ctes(node, ctes)
    return tuple(out)


# ------------------------------------------------------------------ how often each level runs
# A sub-SELECT in an expression, a LATERAL item or a function in FROM runs once per row of its
# level (PostgreSQL runs an uncorrelated one once, but telling them apart is not worth a miss);
# a plain FROM subquery or a CTE runs once per run of its level.

_Levels = list[tuple[dict[str, Json], int | None]]


def _walk(node: Json, runs: int | None, ctes: _Ctes, levels: _Levels) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, runs, ctes, levels)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "SelectStmt" and isinstance(value, dict):
                _select(value, runs, ctes, levels)
            else:
                _walk(value, runs, ctes, levels)


def _select(body: dict[str, Json], runs: int | None, ctes: _Ctes, levels: _Levels) -> None:
    with_clause = body.get("withClause")
    if with_clause:
        _walk(with_clause, runs, ctes, levels)
    if body.get("op", "SETOP_NONE") != "SETOP_NONE":
        _select(body.get("larg") or {}, runs, ctes, levels)
        _select(body.get("rarg") or {}, runs, ctes, levels)
        return
    levels.append((body, runs))
    items = body.get("fromClause") or []
    per_row = _times(runs, _product([i.limit for item in items for i in _inputs(item, ctes)]))
    for item in items:
        _from_item(item, runs, per_row, ctes, levels)
    for key, value in body.items():
        if key not in ("withClause", "fromClause"):
            _walk(value, per_row, ctes, levels)


def _from_item(item: Json, runs: int | None, per_row: int | None, ctes: _Ctes,
               levels: _Levels) -> None:
    kind, body = unwrap(item)
    if kind == "RangeSubselect":
        _walk(body.get("subquery"), per_row if body.get("lateral") else runs, ctes, levels)
    elif kind == "JoinExpr":
        _from_item(body.get("larg"), runs, per_row, ctes, levels)
        _from_item(body.get("rarg"), runs, per_row, ctes, levels)
        _walk(body.get("quals"), per_row, ctes, levels)
    elif kind != "RangeVar":
        _walk(body, per_row, ctes, levels)


def _cte_map(node: Json) -> _Ctes:
    """All CTEs by name. Scoping is ignored on purpose: a reference that could mean a CTE
    counts as both the CTE and the table of that name, which can only add tables."""
    ctes: _Ctes = {}
    for clause in find(node, "withClause"):
        for cte in clause.get("ctes", ()):
            body = unwrap(cte)[1]
            ctes.setdefault(body.get("ctename", ""), []).append(body.get("ctequery"))
    return ctes


# ------------------------------------------------------------------ one SELECT level


def _level(body: dict[str, Json], ctes: _Ctes, runs: int | None) -> list[Collapse]:
    found: list[tuple[str, Json, bool]] = []  # (construct, its argument nodes, reads own FROM)
    for name in _EXPRESSION_FIELDS:
        _constructs(body.get(name), found)
    if not found:
        return []
    items = body.get("fromClause") or []
    inputs = [i for item in items for i in _inputs(item, ctes)]
    product = _product([i.limit for i in inputs])
    if _lateral(items):  # runs once per row of the items before it
        inputs = [CollapseInput(i.tables, product) for i in inputs]
    inputs = [CollapseInput(i.tables, _times(i.limit, runs)) for i in inputs]
    out = []
    for construct, args, reads_from in found:
        per_row = _sublink_inputs(args, ctes, _times(product, runs))
        function = _unknown_function(construct)
        if reads_from:
            out.append(Collapse(construct, tuple(inputs) + per_row, function))
        elif per_row:
            out.append(Collapse(construct, per_row, function))
    return out


def _unknown_function(construct: str) -> str | None:
    """The name of a call that is a collapse only because it is not a built-in (the engine
    drops it when the catalog says the function is no aggregate)."""
    if not construct.startswith(_UNKNOWN):
        return None
    return construct.removeprefix(_UNKNOWN).split(" ", 1)[0]


def _constructs(node: Json, found: list[tuple[str, Json, bool]]) -> None:
    """Collapsing constructs in an expression, not inside sub-SELECTs (their own levels)."""
    if isinstance(node, list):
        for item in node:
            _constructs(item, found)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "SubLink":
            _sublink(value, found)
            continue  # the sub-SELECT is a level of its own; its test expression is not output
        if key == "FuncCall":
            what = _call(value)
            if what is not None:
                found.append((what, value, True))
        elif key in ("JsonArrayAgg", "JsonObjectAgg"):
            found.append((key.replace("Json", "JSON_").upper(), value, True))
        elif key == "JsonArrayQueryConstructor":
            link = {"subLinkType": "ARRAY_SUBLINK", "subselect": value.get("query")}
            found.append(("JSON_ARRAY(subquery)", {"SubLink": link}, False))
            continue
        _constructs(value, found)


def _sublink(link: dict[str, Json], found: list[tuple[str, Json, bool]]) -> None:
    if link.get("subLinkType") == "ARRAY_SUBLINK":
        found.append(("ARRAY(subquery)", {"SubLink": link}, False))
    _constructs(link.get("testexpr"), found)


def _call(call: dict[str, Json]) -> str | None:
    """What a function call is, if it can collapse rows; None for a row-preserving one."""
    names = [n.lower() for n in string_list(call.get("funcname"))]
    name = names[-1] if names else ""
    schema = names[-2] if len(names) > 1 else None
    builtin = schema in _CATALOG_SCHEMAS
    if "over" in call:
        if builtin and name in RANKING_WINDOWS and not _reads_columns(call.get("args")):
            return None
        return f"window function {'.'.join(names)}"
    if call.get("agg_within_group"):
        return f"ordered-set aggregate {'.'.join(names)}"
    if builtin and name in SUMMARY_AGGREGATES:
        return None
    if builtin and name in COLLECTING_AGGREGATES:
        return f"aggregate {'.'.join(names)}"
    if builtin and name in SCALAR_FUNCTIONS and not _aggregate_syntax(call):
        return None
    return f"{_UNKNOWN}{'.'.join(names)} (not a built-in scalar function; it may be an aggregate)"


def _aggregate_syntax(call: dict[str, Json]) -> bool:
    return any(k in call for k in ("agg_star", "agg_distinct", "agg_order", "agg_filter"))


def _reads_columns(node: Json) -> bool:
    if isinstance(node, list):
        return any(_reads_columns(item) for item in node)
    if isinstance(node, dict):
        return any(k in ("ColumnRef", "SubLink") or _reads_columns(v) for k, v in node.items())
    return False


def _sublink_inputs(args: Json, ctes: _Ctes, product: int | None) -> tuple[CollapseInput, ...]:
    """Sub-SELECTs inside a construct run once per row of the level: bounded by the rows each
    returns (one for a scalar or EXISTS sub-SELECT, its LIMIT for an ARRAY) times the level's."""
    out = []
    for link in find(args, "SubLink"):
        select = unwrap(link.get("subselect"))[1]
        tables = _relations(select, ctes)
        each = limit_of(select) if link.get("subLinkType") == "ARRAY_SUBLINK" else 1
        if tables:
            out.append(CollapseInput(tables, _times(each, product)))
    return tuple(out)


# ------------------------------------------------------------------ FROM items


def _inputs(item: Json, ctes: _Ctes) -> list[CollapseInput]:
    kind, body = unwrap(item)
    if kind == "JoinExpr":
        return _inputs(body.get("larg"), ctes) + _inputs(body.get("rarg"), ctes)
    if kind == "RangeSubselect":
        select = unwrap(body.get("subquery"))[1]
        return [CollapseInput(_relations(select, ctes), _bound(select))]
    if kind == "RangeVar":
        ref = table_ref(body)
        out = [CollapseInput((ref,), None)]  # a table, or a CTE shadowing one: count both
        if ref.schema is None and ref.catalog is None:
            for query in ctes.get(ref.name, ()):
                select = unwrap(query)[1]
                out.append(CollapseInput(_relations(query, ctes, frozenset({ref.name})),
                                         _bound(select)))
        return out
    return [CollapseInput(_relations(body, ctes), None)]  # functions, XMLTABLE, JSON_TABLE


def _lateral(items: Json) -> bool:
    return any(b.get("lateral") for kind in ("RangeSubselect", "RangeFunction")
               for b in find(items, kind))


def _bound(select: dict[str, Json]) -> int | None:
    limit = limit_of(select)
    if limit is not None:
        return limit
    if "valuesLists" in select:
        return len(select["valuesLists"])
    return None


def _relations(node: Json, ctes: _Ctes, seen: frozenset[str] = frozenset()
               ) -> tuple[TableRef, ...]:
    """Every relation read under ``node``, through CTE references, transitively."""
    out: dict[TableRef, None] = {}
    for range_var in find(node, "RangeVar"):
        ref = table_ref(range_var)
        out[ref] = None
        if ref.schema is None and ref.catalog is None and ref.name in ctes \
                and ref.name not in seen:
            for query in ctes[ref.name]:
                out.update(dict.fromkeys(_relations(query, ctes, seen | {ref.name})))
    return tuple(out)


def _product(limits: list[int | None]) -> int | None:
    """Rows of a FROM list: the product of its items' bounds (1 for no FROM at all)."""
    return None if None in limits else math.prod(limit or 0 for limit in limits)


def _times(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a * b


# ------------------------------------------------------------------ recursive CTEs


def _recursive_ctes(node: Json, ctes: _Ctes) -> list[Collapse]:
    out = []
    for clause in find(node, "withClause"):
        if not clause.get("recursive"):
            continue
        for cte in clause.get("ctes", ()):
            body = unwrap(cte)[1]
            name = body.get("ctename", "")
            query = body.get("ctequery")
            refs = [table_ref(r) for r in find(query, "RangeVar")]
            if any(r.name == name and r.schema is None for r in refs):
                tables = tuple(t for t in _relations(query, ctes, frozenset({name}))
                               if t != TableRef(name))
                if tables:
                    out.append(Collapse(f"recursive CTE {name}", (CollapseInput(tables, None),)))
    return out
