"""Taint check of output expressions: may a result column carry a masked column's value?

Used for result columns PostgreSQL reports no source for (expressions, aggregates, UNION,
whole-row references) and for view columns. Name-based and scope-insensitive on purpose, so it
over-approximates: a column reference is tainted when its name is a masked column's name, or
the output name of any subquery, CTE or VALUES target in the statement that is itself tainted
(iterated to a fixpoint), or when it refers to a whole row (a relation name or alias, or
``*``). When the statement's output positions cannot be matched to expressions (``*`` among
the targets, a statement other than SELECT/VALUES/RETURNING), the answer is ``None``: unsure,
which callers treat as tainted. Pure; driven by ``gateway/masking``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from pglast import parser

from policies.sqltree import Json, unwrap

CLEAN, TAINTED = "clean", "tainted"


@dataclass(frozen=True, slots=True)
class Output:
    """One output position: ``taint`` is clean or tainted; ``column`` is set when the
    expression is nothing but a reference to a masked column of that name."""

    taint: str
    column: str | None = None


def output_taint(sql: str, masked_names: frozenset[str]) -> tuple[Output, ...] | None:
    """Per output position of the (single) statement in ``sql``; None when unsure."""
    try:
        tree = json.loads(parser.parse_sql_json(sql))
    except Exception:  # unparseable here means unsure, never clean
        return None
    stmts = tree.get("stmts", [])
    if len(stmts) != 1:
        return None
    root = stmts[0].get("stmt")
    names = _tainted_names(root, masked_names)
    kind, body = unwrap(root)
    if kind == "SelectStmt":
        return _positions(body, names, masked_names)
    if kind in ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"):
        returning = (body.get("returningClause") or {}).get("exprs")
        return _targets(returning, names, masked_names) if returning else None
    return None


def relation_names(sql: str) -> list[str]:
    """"schema.name" or "name" of every relation the statement's FROM clauses name."""
    try:
        tree = json.loads(parser.parse_sql_json(sql))
    except Exception:
        return []
    return [".".join(p for p in (body.get("schemaname"), body.get("relname")) if p)
            for kind, body in _nodes(tree) if kind == "RangeVar"]


def expression_tainted(node: Json, names: frozenset[str]) -> bool:
    for ref in _column_refs(node):
        fields = ref.get("fields", [])
        if any(unwrap(f)[0] == "A_Star" for f in fields):
            return True
        last = unwrap(fields[-1])[1].get("sval", "").lower() if fields else ""
        if last in names:
            return True
    return False


def _positions(body: dict[str, Json], names: frozenset[str],
               masked: frozenset[str]) -> tuple[Output, ...] | None:
    if body.get("op", "SETOP_NONE") != "SETOP_NONE":
        left = _positions(body.get("larg", {}), names, masked)
        right = _positions(body.get("rarg", {}), names, masked)
        if left is None or right is None or len(left) != len(right):
            return None
        # After a set operation no output is a plain column any more.
        return tuple(Output(TAINTED if TAINTED in (a.taint, b.taint) or a.column or b.column
                            else CLEAN) for a, b in zip(left, right, strict=True))
    if "valuesLists" in body:
        rows = [unwrap(r)[1].get("items", []) for r in body["valuesLists"]]
        width = len(rows[0]) if rows else 0
        return tuple(Output(TAINTED if any(expression_tainted(r[i], names) for r in rows)
                            else CLEAN) for i in range(width))
    return _targets(body.get("targetList"), names, masked)


def _targets(targets: list[Json] | None, names: frozenset[str],
             masked: frozenset[str]) -> tuple[Output, ...] | None:
    out = []
    for target in targets or ():
        value = unwrap(target)[1].get("val")
        kind, ref = unwrap(value)
        fields = ref.get("fields", []) if kind == "ColumnRef" else []
        if any(unwrap(f)[0] == "A_Star" for f in fields):
            return None  # `*` expands to columns we cannot count here
        if fields:
            last = unwrap(fields[-1])[1].get("sval", "").lower()
            if last in masked:
                out.append(Output(TAINTED, column=last))
                continue
        out.append(Output(TAINTED if expression_tainted(value, names) else CLEAN))
    return tuple(out)


def _tainted_names(root: Json, masked: frozenset[str]) -> frozenset[str]:
    """Masked names, plus relation names and aliases (whole-row references) and every output
    name that carries a tainted expression, to a fixpoint."""
    names = set(masked)
    for kind, body in _nodes(root):
        if kind == "RangeVar":
            names.add(body.get("relname", "").lower())
        if kind in ("RangeVar", "RangeSubselect", "RangeFunction", "JoinExpr"):
            alias = body.get("alias") or {}
            if alias.get("aliasname"):
                names.add(alias["aliasname"].lower())
        if kind == "CommonTableExpr":
            names.add(body.get("ctename", "").lower())
    while True:
        before = len(names)
        for kind, body in _nodes(root):
            _propagate(kind, body, names)
        if len(names) == before:
            return frozenset(names)


def _propagate(kind: str, body: dict[str, Json], names: set[str]) -> None:
    frozen = frozenset(names)
    if kind == "ResTarget" and body.get("name") and expression_tainted(body.get("val"), frozen):
        names.add(body["name"].lower())
    elif kind in ("RangeSubselect", "RangeFunction", "CommonTableExpr"):
        inner = body.get("subquery") or body.get("ctequery") or body.get("functions")
        if inner is not None and expression_tainted(inner, frozen):
            alias = body.get("alias") or {}
            for col in alias.get("colnames", []) + body.get("aliascolnames", []):
                names.add(unwrap(col)[1].get("sval", "").lower())


def _nodes(node: Json) -> Iterator[tuple[str, dict[str, Json]]]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, dict) and key[:1].isupper():
                    yield key, value
                if isinstance(value, dict | list):
                    stack.append(value)


def _column_refs(node: Json) -> Iterator[dict[str, Json]]:
    for kind, body in _nodes(node):
        if kind == "ColumnRef":
            yield body
