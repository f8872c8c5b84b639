"""Bulk-export analysis: which tables' rows leave a statement unfiltered, and under what LIMIT.

A SELECT returns rows of the tables in its FROM list unless a WHERE that mentions a column, a
GROUP BY, or a bare scalar aggregate (``count(*)`` without GROUP BY) cuts them down; a LIMIT caps
them. Rows also leave through sub-SELECTs in the target list (``ARRAY(SELECT ...)``,
``(SELECT array_agg(...))``), through FROM-list functions fed by sub-SELECTs, through CTE
references, and through RETURNING of UPDATE/DELETE/INSERT/MERGE. ``classify`` calls
``statement_flows``; the engine decides whether a flow is an export once it knows which tables
are PHI and the allowing rule's ``max_rows``.

Being a static, conservative analysis it also flags some harmless statements; the run-time
``max_rows`` cut is the backstop for filters that filter nothing (``WHERE id > 0``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from policies.sqltree import Json, find, int_constant, string_list, table_ref, unwrap
from policies.statement import RowShape, TableRef

Flow = tuple[TableRef, int | None]  # (table, smallest LIMIT on the way out)

# Aggregates that fold any number of rows into one scalar. array_agg, string_agg, json_agg and
# friends are deliberately absent: one row holding every value is still an export.
SCALAR_AGGREGATES = frozenset(
    {
        "count", "sum", "avg", "min", "max", "stddev", "stddev_pop", "stddev_samp", "variance",
        "var_pop", "var_samp", "bool_and", "bool_or", "every", "bit_and", "bit_or", "bit_xor",
        "corr", "covar_pop", "covar_samp", "regr_avgx", "regr_avgy", "regr_count",
        "regr_intercept", "regr_r2", "regr_slope", "regr_sxx", "regr_sxy", "regr_syy",
        "percentile_cont", "percentile_disc", "mode", "any_value",
    }
)  # fmt: skip
_ROW_SUBLINKS = frozenset({"EXPR_SUBLINK", "ARRAY_SUBLINK", "MULTIEXPR_SUBLINK"})


@dataclass(eq=False)
class _Cte:
    query: Json
    scope: _Scope
    busy: bool = False
    flows: list[Flow] | None = None


@dataclass(eq=False)
class _Scope:
    parent: _Scope | None
    ctes: dict[str, _Cte] = field(default_factory=dict)

    def lookup(self, name: str) -> _Cte | None:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.ctes:
                return scope.ctes[name]
            scope = scope.parent
        return None


def statement_flows(kind: str, body: dict[str, Json]) -> list[Flow]:
    """Unfiltered row flows of a top-level SELECT, INSERT, UPDATE, DELETE or MERGE."""
    root = _Scope(None)
    if kind == "SelectStmt":
        return _dedupe(_select(body, root))
    return _dedupe(_dml(kind, body, root))


def row_shape(body: dict[str, Json], via: str) -> RowShape:
    """Facts about a SELECT's outermost level (for the journal; the flows decide)."""
    return RowShape(
        has_where=has_column_filter(body.get("whereClause")),
        limit=limit_of(body),
        aggregate_only=aggregate_only(body),
        via=via,
    )


def limit_of(body: dict[str, Json]) -> int | None:
    """The constant LIMIT / FETCH FIRST count; None for none, ALL, NULL, $n or WITH TIES."""
    if body.get("limitOption") != "LIMIT_OPTION_COUNT" or "limitCount" not in body:
        return None
    return int_constant(body["limitCount"])


def has_column_filter(where: Json) -> bool:
    """A WHERE counts only if it mentions a column outside sub-SELECTs (not ``WHERE 1=1``)."""
    if where is None:
        return False
    return next(find(where, "ColumnRef", into_sublinks=False), None) is not None


def aggregate_only(body: dict[str, Json]) -> bool:
    """Scalar aggregates only, no GROUP BY, no window: at most one row comes out."""
    if body.get("groupClause") or body.get("windowClause") or not body.get("targetList"):
        return False
    state = {"agg": False, "ok": True}
    for target in body["targetList"]:
        _scan_aggregate(unwrap(target)[1].get("val"), state)
    return state["ok"] and state["agg"]


def _scan_aggregate(node: Json, state: dict[str, bool]) -> None:
    if isinstance(node, list):
        for item in node:
            _scan_aggregate(item, state)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "ColumnRef" or (key == "FuncCall" and "over" in value):
            state["ok"] = False
        elif key == "FuncCall" and _function_name(value) in SCALAR_AGGREGATES:
            state["agg"] = True
        elif key != "SubLink":  # sub-SELECTs are flows of their own
            _scan_aggregate(value, state)


def _function_name(call: dict[str, Json]) -> str:
    names = string_list(call.get("funcname"))
    return names[-1].lower() if names else ""


def _select(body: dict[str, Json], scope: _Scope) -> list[Flow]:
    scope = _with_scope(body, scope)
    if body.get("op", "SETOP_NONE") != "SETOP_NONE":
        flows = _select(body.get("larg", {}), scope) + _select(body.get("rarg", {}), scope)
    else:
        flows = _sublinks(body.get("targetList"), scope) + _sublinks(body.get("valuesLists"), scope)
        # GROUP BY: one row per group leaves, counted by max_rows at run time like a WHERE's
        # rows; what an aggregate folds into a group is policies.collapse's business.
        grouped = bool(body.get("groupClause"))
        if not (has_column_filter(body.get("whereClause")) or aggregate_only(body) or grouped):
            for item in body.get("fromClause", ()):
                flows += _from_item(item, scope)
    return _cap(flows, limit_of(body))


def _dml(kind: str, body: dict[str, Json], scope: _Scope) -> list[Flow]:
    scope = _with_scope(body, scope)
    returning = body.get("returningClause") or body.get("returningList")
    flows: list[Flow] = []
    if kind == "InsertStmt":
        select_kind, select = unwrap(body.get("selectStmt"))
        if select_kind == "SelectStmt":
            flows += _select(select, scope)
        return flows + _sublinks(returning, scope) if returning else flows
    if not returning:
        return []
    flows += _sublinks(returning, scope)
    if kind == "MergeStmt":
        return flows + [(table_ref(body["relation"]), None)] + _from_item(
            body.get("sourceRelation"), scope
        )
    if not has_column_filter(body.get("whereClause")):
        flows.append((table_ref(body["relation"]), None))
        for item in [*body.get("fromClause", ()), *body.get("usingClause", ())]:
            flows += _from_item(item, scope)
    return flows


def _from_item(item: Json, scope: _Scope) -> list[Flow]:
    kind, body = unwrap(item)
    if kind == "RangeVar":
        ref = table_ref(body)
        cte = scope.lookup(ref.name) if ref.schema is None and ref.catalog is None else None
        return _cte_flows(cte) if cte is not None else [(ref, None)]
    if kind == "JoinExpr":
        return _from_item(body.get("larg"), scope) + _from_item(body.get("rarg"), scope)
    if kind == "RangeSubselect":
        return _select(unwrap(body.get("subquery"))[1], scope)
    if kind == "RangeTableSample":
        return _from_item(body.get("relation"), scope)
    return _sublinks(body, scope)  # RangeFunction, XMLTABLE, JSON_TABLE fed by sub-SELECTs


def _cte_flows(cte: _Cte) -> list[Flow]:
    if cte.flows is not None:
        return cte.flows
    if cte.busy:  # a recursive CTE's reference to itself adds nothing new
        return []
    cte.busy = True
    kind, body = unwrap(cte.query)
    flows = _select(body, cte.scope) if kind == "SelectStmt" else _dml(kind, body, cte.scope)
    cte.busy, cte.flows = False, flows
    return flows


def _with_scope(body: dict[str, Json], scope: _Scope) -> _Scope:
    clause = body.get("withClause")
    if not clause:
        return scope
    ctes = [unwrap(c)[1] for c in clause.get("ctes", ())]
    if clause.get("recursive"):
        final = _Scope(scope)
        for cte in ctes:
            final.ctes[cte.get("ctename", "")] = _Cte(cte.get("ctequery"), final)
        return final
    current = scope
    for cte in ctes:  # each CTE sees only the ones before it
        current = _Scope(current, {cte.get("ctename", ""): _Cte(cte.get("ctequery"), current)})
    return current


def _sublinks(node: Json, scope: _Scope) -> list[Flow]:
    flows: list[Flow] = []
    for link in _top_sublinks(node):
        if link.get("subLinkType") in _ROW_SUBLINKS:
            flows += _select(unwrap(link.get("subselect"))[1], scope)
    return flows


def _top_sublinks(node: Json) -> Iterator[dict[str, Json]]:
    if isinstance(node, list):
        for item in node:
            yield from _top_sublinks(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "SubLink" and isinstance(value, dict):
                yield value
            else:
                yield from _top_sublinks(value)


def _cap(flows: list[Flow], limit: int | None) -> list[Flow]:
    if limit is None:
        return flows
    return [(ref, limit if old is None or old > limit else old) for ref, old in flows]


def _dedupe(flows: list[Flow]) -> list[Flow]:
    best: dict[TableRef, int | None] = {}
    for ref, limit in flows:
        if ref not in best:
            best[ref] = limit
        elif best[ref] is not None and (limit is None or limit > (best[ref] or 0)):
            best[ref] = limit  # keep the loosest limit: that is the one that might export
    return list(best.items())
