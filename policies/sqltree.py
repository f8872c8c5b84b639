"""Reading libpg_query's JSON parse tree: constants, names, and a walk that collects relations.

pglast's ``parser.parse_sql_json`` is several times faster than building pglast's Python node
objects, so the classifier works on the JSON tree. In it, a field typed ``Node *`` holds a
one-key wrapper (``{"RangeVar": {...}}``) while a field with a concrete type (``relation``,
``rel``, a set operation's ``larg``) holds the bare body; default values are omitted.

``TreeWalker`` visits a whole statement and records every relation (minus references to CTEs in
scope), every function call and every SET. CTE scoping follows PostgreSQL: a non-recursive CTE
sees only the CTEs before it; DML target relations are never CTE references.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from policies.statement import TableRef

Json = Any  # a node of the JSON parse tree: dict, list, str, int, bool

NOT_CONSTANT = object()  # sentinel: the expression is not a plain constant

# Relation kinds whose DROP/COMMENT names we record as tables.
_TABLE_OBJECTS = frozenset(
    {"OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_FOREIGN_TABLE", "OBJECT_SEQUENCE"}
)
_DML_NODES = {
    "SelectStmt": "select",
    "InsertStmt": "insert",
    "UpdateStmt": "update",
    "DeleteStmt": "delete",
    "MergeStmt": "merge",
}


def unwrap(node: Json) -> tuple[str, dict[str, Json]]:
    """``{"Type": body}`` → ``("Type", body)``; anything else → ``("", {})``."""
    if isinstance(node, dict) and len(node) == 1:
        ((kind, body),) = node.items()
        if isinstance(body, dict):
            return kind, body
    return "", {}


def string_list(items: Iterable[Json] | None) -> tuple[str, ...]:
    """A list of ``{"String": {"sval": ...}}`` nodes (a qualified name) as plain strings."""
    out = []
    for item in items or ():
        kind, body = unwrap(item)
        if kind == "String":
            out.append(body.get("sval", ""))
    return tuple(out)


def constant(node: Json) -> object:
    """The value of an ``A_Const`` (also through a cast), or ``NOT_CONSTANT``."""
    kind, body = unwrap(node)
    if kind == "TypeCast":
        return constant(body.get("arg"))
    if kind != "A_Const":
        return NOT_CONSTANT
    if body.get("isnull"):
        return None
    for key in ("sval", "ival", "fval", "boolval", "bsval"):
        if key in body:
            inner = body[key]
            return inner.get(key, 0 if key == "ival" else False if key == "boolval" else "")
    return NOT_CONSTANT


def int_constant(node: Json) -> int | None:
    """A non-negative integer constant (a LIMIT), else None."""
    value = constant(node)
    if isinstance(value, bool) or value is NOT_CONSTANT or value is None:
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def table_ref(range_var: dict[str, Json]) -> TableRef:
    return TableRef(
        name=range_var.get("relname", ""),
        schema=range_var.get("schemaname"),
        catalog=range_var.get("catalogname"),
    )


def names_to_ref(names: tuple[str, ...]) -> TableRef | None:
    if not names or len(names) > 3:
        return None
    padded = (None,) * (3 - len(names)) + names
    return TableRef(name=padded[2] or "", schema=padded[1], catalog=padded[0])


def find(node: Json, kind: str, *, into_sublinks: bool = True) -> Iterator[dict[str, Json]]:
    """Every body of a ``kind`` node under ``node``; optionally not inside sub-SELECTs."""
    if isinstance(node, list):
        for item in node:
            yield from find(item, kind, into_sublinks=into_sublinks)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == kind and isinstance(value, dict):
                yield value
            if not into_sublinks and key == "SubLink" and isinstance(value, dict):
                yield from find(value.get("testexpr"), kind, into_sublinks=False)
                continue
            yield from find(value, kind, into_sublinks=into_sublinks)


class TreeWalker:
    """Collects relations, function calls and DML node kinds of one statement's tree."""

    def __init__(self) -> None:
        self.tables: dict[TableRef, None] = {}  # ordered set
        self.calls: list[dict[str, Json]] = []
        self.dml: set[str] = set()
        self.operators: dict[str, None] = {}  # operator names (bare), in order
        self.casts: dict[str, None] = {}  # type names cast to, as written (lower case)

    def walk(self, node: Json, scope: frozenset[str] = frozenset()) -> TreeWalker:
        self._visit(node, scope)
        return self

    def functions(self) -> tuple[str, ...]:
        seen = {".".join(string_list(c.get("funcname"))).lower(): None for c in self.calls}
        return tuple(seen)

    def _visit(self, node: Json, scope: frozenset[str]) -> None:
        if isinstance(node, list):
            for item in node:
                self._visit(item, scope)
        elif isinstance(node, dict):
            if "relname" in node:  # a bare RangeVar: a DML target or INTO, never a CTE
                self.tables[table_ref(node)] = None
            elif "withClause" in node:
                self._with(node, scope)
            else:
                for key, value in node.items():
                    self._field(key, value, scope)

    def _field(self, key: str, value: Json, scope: frozenset[str]) -> None:
        if key == "RangeVar":
            ref = table_ref(value)
            if ref.schema is not None or ref.catalog is not None or ref.name not in scope:
                self.tables[ref] = None
            return
        if key in ("FuncCall", "funccall"):  # "funccall": CallStmt's bare FuncCall
            self.calls.append(value)
        elif key == "A_Expr":
            names = string_list(value.get("name"))
            if names:
                self.operators[names[-1]] = None
        elif key == "TypeCast":
            names = string_list((value.get("typeName") or {}).get("names"))
            if names:
                self.casts[".".join(names).lower()] = None
        elif key in _DML_NODES and not (key == "SelectStmt" and "valuesLists" in value):
            self.dml.add(_DML_NODES[key])
        elif key in ("DropStmt", "CommentStmt", "GrantStmt", "SecLabelStmt"):
            self._named_objects(key, value)
        self._visit(value, scope)

    def _with(self, body: dict[str, Json], scope: frozenset[str]) -> None:
        clause = body["withClause"]
        ctes = [unwrap(c)[1] for c in clause.get("ctes", ())]
        names = [c.get("ctename", "") for c in ctes]
        for index, cte in enumerate(ctes):
            visible = names if clause.get("recursive") else names[:index]
            self._visit(cte.get("ctequery"), scope | frozenset(visible))
        full = scope | frozenset(names)
        for key, value in body.items():
            if key != "withClause":
                self._field(key, value, full)

    def _named_objects(self, kind: str, body: dict[str, Json]) -> None:
        objtype = body.get("removeType") or body.get("objtype")
        if kind == "GrantStmt":
            if objtype == "OBJECT_TABLE" and body.get("targtype") == "ACL_TARGET_ALL_IN_SCHEMA":
                for schema in string_list(body.get("objects")):
                    self.tables[TableRef(name="*", schema=schema)] = None
            return
        if kind in ("CommentStmt", "SecLabelStmt"):
            objects = [body.get("object")]
            if objtype == "OBJECT_COLUMN":
                names = string_list(unwrap(body.get("object"))[1].get("items"))
                self._add_names(names[:-1])
                return
        else:
            objects = body.get("objects") or []
        if objtype not in _TABLE_OBJECTS:
            return
        for obj in objects:
            self._add_names(string_list(unwrap(obj)[1].get("items")))

    def _add_names(self, names: tuple[str, ...]) -> None:
        ref = names_to_ref(names)
        if ref is not None:
            self.tables[ref] = None
