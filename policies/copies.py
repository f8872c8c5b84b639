"""Write targets: the relations a statement writes values into, read from its parse tree.

A write whose values come from a PHI table into a relation that is not one is a copy of PHI
that no row limit or budget sees (it returns nothing to the client), and afterwards reads of
the copy are not PHI reads at all; ``policies.evaluate`` makes it a bulk export. ``classify``
calls ``write_targets`` once per statement (the result is cached with the classification).

Every INSERT, UPDATE and MERGE node of the tree counts, wherever it is (writable CTEs), plus
SELECT INTO and CREATE TABLE AS. DELETE writes no values, so it is no target (nor is a MERGE
whose every action is DELETE or DO NOTHING). Neither is a
materialized view (its reads count as reads of its sources through the catalog, as a view's
do) nor CREATE TABLE AS … WITH NO DATA (it copies no rows).
"""

from __future__ import annotations

from policies.sqltree import Json, find, table_ref, unwrap
from policies.statement import TableRef, WriteTarget

_DML_TARGETS = (("InsertStmt", "insert"), ("UpdateStmt", "update"), ("MergeStmt", "merge"))
_NO_VALUES = frozenset({"CMD_DELETE", "CMD_NOTHING"})  # MERGE actions that write no values


def write_targets(node: Json) -> tuple[WriteTarget, ...]:
    """The relations the statement ``node`` (``{"InsertStmt": {...}}``) writes values into."""
    kind, body = unwrap(node)
    out: dict[WriteTarget, None] = {}
    if kind == "CreateTableAsStmt":
        _into(body.get("into"), "create table as", out, matview=body.get("objtype")
              == "OBJECT_MATVIEW")
    for select in find(node, "SelectStmt"):  # PostgreSQL takes INTO only at the top
        _into(select.get("intoClause"), "select into", out)
    for key, via in _DML_TARGETS:
        for dml in find(node, key):
            relation = dml.get("relation")
            if isinstance(relation, dict) and not (key == "MergeStmt" and _deletes_only(dml)):
                out[WriteTarget(table_ref(relation), via)] = None
    return tuple(out)


def _deletes_only(merge: dict[str, Json]) -> bool:
    actions = [unwrap(c)[1].get("commandType") for c in merge.get("mergeWhenClauses") or ()]
    return bool(actions) and _NO_VALUES.issuperset(actions)


def _into(clause: Json, via: str, out: dict[WriteTarget, None], *,
          matview: bool = False) -> None:
    if not isinstance(clause, dict) or matview or clause.get("skipData"):
        return
    relation = clause.get("rel")
    if isinstance(relation, dict):
        ref = table_ref(relation)
        if relation.get("relpersistence") == "t":  # TEMP: made in pg_temp, whatever it says
            ref = TableRef(ref.name, "pg_temp")
        out[WriteTarget(ref, via)] = None
