"""Classify SQL with PostgreSQL's own parser (libpg_query via pglast), never with regexes.

``classify(sql)`` parses a whole query string and returns one ``Statement`` per statement: its
classes, the relations and functions it touches, why it is dangerous, its unfiltered row flows
and the relations it writes values into (for ``bulk_export``), and the session effect the
gateway must record (PREPARE, DECLARE, SET phigate.reason). It never raises for bad input:
text the parser rejects comes back with ``Classification.error`` set, and the engine denies it.
The result depends on the text alone, so ``policies.cache`` may cache it under the exact text.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable

from pglast import parser

from policies import danger
from policies.collapse import statement_collapses
from policies.copies import write_targets
from policies.escapes import parse_json_with_escapes
from policies.flows import row_shape, statement_flows
from policies.model import StatementClass as C
from policies.renames import relabels
from policies.sqltree import NOT_CONSTANT, Json, TreeWalker, constant, unwrap
from policies.statement import (
    INERT,
    TRUNCATES,
    CatalogEffect,
    Classification,
    ExportFlow,
    RowShape,
    SessionEffect,
    Statement,
)
from policies.systemviews import system_reads
from policies.weights import row_sources

REASON_SETTING = "phigate.reason"  # consumed by the gateway; never forwarded upstream

_SIMPLE = {
    "TransactionStmt": C.TRANSACTION,
    "ConstraintsSetStmt": C.TRANSACTION,
    "VariableShowStmt": C.SESSION,
    "ListenStmt": C.SESSION,
    "UnlistenStmt": C.SESSION,
    "NotifyStmt": C.SESSION,
    "VacuumStmt": C.UTILITY,
    "ClusterStmt": C.UTILITY,
    "ReindexStmt": C.UTILITY,
    "CheckPointStmt": C.UTILITY,
    "LockStmt": C.UTILITY,
    "RefreshMatViewStmt": C.UTILITY,
    "LoadStmt": C.UTILITY,
    "CallStmt": C.CALL,
    "DoStmt": C.CALL,
}
_DCL = frozenset(
    {
        "GrantStmt", "GrantRoleStmt", "CreateRoleStmt", "AlterRoleStmt", "AlterRoleSetStmt",
        "DropRoleStmt", "AlterDefaultPrivilegesStmt", "ReassignOwnedStmt", "DropOwnedStmt",
        "CreatePolicyStmt", "AlterPolicyStmt", "SecLabelStmt", "CreateUserMappingStmt",
        "AlterUserMappingStmt", "DropUserMappingStmt",
    }
)  # fmt: skip
_DDL_PREFIXES = ("Create", "Alter", "Drop", "Define", "Rename", "Comment", "Import", "Composite",
                 "Index", "View", "Rule")
_FALSE_WORDS = frozenset({"false", "off", "0", "no"})
_WORDS = re.compile(r"(?<=[a-z])([A-Z])")


def classify(sql: str, *, standard_strings: bool = True) -> Classification:
    """Parse and classify every statement of ``sql``. Never raises for bad SQL.

    ``standard_strings=False`` parses as a server with ``standard_conforming_strings = off``
    does: backslashes are escapes in plain string literals."""
    if "\x00" in sql:  # libpg_query stops at a NUL; the server rejects the message
        return Classification(sql, (), error="NUL character in statement text")
    try:
        if standard_strings or "\\" not in sql:
            tree = json.loads(parser.parse_sql_json(sql))
        else:
            tree = json.loads(parse_json_with_escapes(sql))
        raw = sql.encode("utf-8")
        items = tree.get("stmts", ())
        statements = tuple(classify_node(i["stmt"], _statement_text(raw, i)) for i in items)
    except parser.ParseError as e:
        message, index = e.args[0], e.args[1] if len(e.args) > 1 else None
        position = index + 1 if isinstance(index, int) else len(sql) + 1
        return Classification(sql, (), error=f"syntax error: {e}", syntax_error=str(message),
                              error_position=position)
    except RecursionError:
        return Classification(sql, (), error="statement nested too deeply to analyse")
    except (ValueError, UnicodeError) as e:
        return Classification(sql, (), error=f"unreadable statement text: {e}")
    return Classification(sql, statements)


def classify_node(node: Json, text: str) -> Statement:
    """Classify one parsed statement (``{"SelectStmt": {...}}``)."""
    kind, body = unwrap(node)
    handler = _HANDLERS.get(kind)
    if handler is not None:
        return handler(kind, body, node, text)
    if kind in _SIMPLE:
        return _build(kind, body, node, text, {_SIMPLE[kind]})
    if kind in _DCL:
        return _build(kind, body, node, text, {C.DCL})
    if kind.startswith(_DDL_PREFIXES):
        return _build(kind, body, node, text, {C.DDL})
    return _build(kind, body, node, text, {C.DDL}, extra=(f"unrecognised statement {kind}",))


def _statement_text(raw: bytes, item: dict[str, Json]) -> str:
    start = item.get("stmt_location", 0)  # byte offsets into the UTF-8 text
    length = item.get("stmt_len", 0) or len(raw) - start
    return raw[start : start + length].decode("utf-8").strip()


def _build(
    kind: str,
    body: dict[str, Json],
    node: Json,
    text: str,
    classes: set[str],
    *,
    dml: bool = False,
    extra: tuple[str, ...] = (),
    **fields: object,
) -> Statement:
    """The common part: walk the tree for relations, functions and dangers."""
    walker = TreeWalker().walk(node)
    dangers = list(extra)
    own = danger.statement_danger(kind, body)
    if own:
        dangers.append(own)
    for call in walker.calls:
        why, role_change = danger.function_danger(call)
        if why:
            dangers.append(why)
        if role_change:
            classes.add(C.ROLE_CHANGE)
    if dml:
        classes |= walker.dml
        fields.setdefault("collapses", statement_collapses(node))
    return Statement(
        text=text,
        command=_command(kind),
        classes=frozenset(str(c) for c in classes),
        tables=tuple(walker.tables),
        functions=walker.functions(),
        operators=tuple(walker.operators),
        casts=tuple(walker.casts),
        dangerous=tuple(dict.fromkeys(dangers)),
        system_reads=system_reads(node),
        writes=write_targets(node),
        relabels=relabels(node) if C.DDL in classes else (),
        catalog_effect=_catalog_effect(kind, body) if C.DDL in classes else "",
        **fields,  # type: ignore[arg-type]
    )


def _catalog_effect(kind: str, body: dict[str, Json]) -> CatalogEffect:
    """DDL that writes no catalog row the policy reads (``policies.fingerprint``): TRUNCATE
    (a new ``relfilenode``), an index on plain columns (an expression or predicate may call
    a user function on every write), DROP INDEX and COMMENT; not with CASCADE (it reaches
    other objects)."""
    if body.get("behavior") == "DROP_CASCADE":
        return ""
    if kind == "TruncateStmt":
        return TRUNCATES
    if kind == "IndexStmt":
        elements = [unwrap(e)[1] for e in body.get("indexParams") or ()]
        plain = all("expr" not in e for e in elements)
        return INERT if plain and not body.get("whereClause") else ""
    if kind == "DropStmt":
        return INERT if body.get("removeType") == "OBJECT_INDEX" else ""
    return INERT if kind == "CommentStmt" else ""


@functools.lru_cache(maxsize=256)
def _command(kind: str) -> str:
    """"CreateTableAsStmt" → "CREATE TABLE AS", for messages and the journal."""
    return _WORDS.sub(r" \1", kind.removesuffix("Stmt")).strip().upper()


def _exports(kind: str, body: dict[str, Json], via: str) -> tuple[ExportFlow, ...]:
    return tuple(ExportFlow(ref, limit, via) for ref, limit in statement_flows(kind, body))


def _select(kind: str, body: dict[str, Json], node: Json, text: str) -> Statement:
    into = "intoClause" in body
    via = "select into" if into else "select"
    return _build(
        kind, body, node, text, {C.SELECT, C.DDL} if into else {C.SELECT}, dml=True,
        exports=_exports(kind, body, via), shape=_shape(body, via),
        locks_rows=_has_key(node, "lockingClause"),
        row_sources=() if into else row_sources(body),
    )  # fmt: skip


def _has_key(node: Json, key: str) -> bool:
    """Whether any object in the tree has ``key`` (e.g. FOR UPDATE in any subquery)."""
    todo = [node]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            if key in item:
                return True
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return False


def _shape(body: dict[str, Json], via: str) -> RowShape | None:
    return row_shape(body, via) if "valuesLists" not in body else None


def _dml(kind: str, body: dict[str, Json], node: Json, text: str) -> Statement:
    select_kind, select = unwrap(body.get("selectStmt"))
    via = "insert select" if kind == "InsertStmt" else "returning"
    shape = _shape(select, via) if select_kind == "SelectStmt" else None
    exports = _exports(kind, body, via)
    return _build(kind, body, node, text, set(), dml=True, exports=exports, shape=shape)


def _copy(kind: str, body: dict[str, Json], node: Json, text: str) -> Statement:
    if body.get("is_from"):
        return _build(kind, body, node, text, {C.COPY_IN})
    stmt = _build(kind, body, node, text, {C.COPY_OUT}, dml=True, copy_to=True)
    # A COPY (query) needs copy_out, plus any DML its query does; its SELECT is the copy itself.
    return dataclasses.replace(stmt, classes=stmt.classes - {C.SELECT} | {C.COPY_OUT})


def _create_table_as(kind: str, body: dict[str, Json], node: Json, text: str) -> Statement:
    query_kind, query = unwrap(body.get("query"))
    if query_kind == "ExecuteStmt":  # CREATE TABLE ... AS EXECUTE name
        return _build(kind, body, node, text, {C.DDL}, executes=query.get("name"))
    return _build(
        kind, body, node, text, {C.DDL}, dml=True,
        exports=_exports(query_kind, query, "create table as"),
        shape=_shape(query, "create table as"),
    )  # fmt: skip


def _truncate(kind: str, body: dict[str, Json], node: Json, text: str) -> Statement:
    return _build(kind, body, node, text, {C.DDL, C.DELETE})


def _explain(kind: str, body: dict[str, Json], node: Json, text: str) -> Statement:
    inner = classify_node(body.get("query"), text)
    if _explain_analyze(body.get("options") or ()):  # ANALYZE runs the statement: judge that
        return dataclasses.replace(inner, command=f"EXPLAIN ANALYZE {inner.command}", effect=None)
    return dataclasses.replace(
        inner, command="EXPLAIN", classes=frozenset({C.UTILITY}), exports=(), writes=(),
        collapses=(),
        system_reads=(), shape=None, row_sources=(),
        copy_to=False, explain_only=True, effect=None,
    )  # fmt: skip


def _explain_analyze(options: tuple[Json, ...] | list[Json]) -> bool:
    for option in options:
        _, elem = unwrap(option)
        if elem.get("defname") != "analyze":
            continue
        if "arg" not in elem:
            return True
        arg_kind, arg = unwrap(elem["arg"])
        if arg_kind == "Boolean":
            return bool(arg.get("boolval", False))
        if arg_kind == "Integer":
            return arg.get("ival", 0) != 0
        if arg_kind == "String":
            return str(arg.get("sval", "")).lower() not in _FALSE_WORDS
        return True  # a value we cannot read: assume the statement runs
    return False


def _prepare(kind: str, body: dict[str, Json], node: Json, text: str) -> Statement:
    inner = classify_node(body.get("query"), text)
    effect = SessionEffect("prepare", name=body.get("name"), statement=inner)
    # Decided like the statement it prepares, as a protocol-level Parse is.
    return dataclasses.replace(inner, command="PREPARE", effect=effect)


def _execute(kind: str, body: dict[str, Json], node: Json, text: str) -> Statement:
    return _build(kind, body, node, text, set(), dml=True, executes=body.get("name"))


def _declare(kind: str, body: dict[str, Json], node: Json, text: str) -> Statement:
    query_kind, query = unwrap(body.get("query"))
    stmt = _build(
        kind, body, node, text, {C.SELECT}, dml=True,
        exports=_exports(query_kind, query, "cursor"), shape=_shape(query, "cursor"),
        row_sources=row_sources(query) if query_kind == "SelectStmt" else (),
    )  # fmt: skip
    effect = SessionEffect("declare", name=body.get("portalname"), statement=stmt)
    return dataclasses.replace(stmt, effect=effect)


def _fetch(kind: str, body: dict[str, Json], node: Json, text: str) -> Statement:
    command = "MOVE" if body.get("ismove") else "FETCH"
    stmt = _build(kind, body, node, text, {C.SELECT}, fetches=body.get("portalname", ""))
    return dataclasses.replace(stmt, command=command)


def _close(kind: str, body: dict[str, Json], node: Json, text: str) -> Statement:
    effect = SessionEffect("close", name=body.get("portalname"))
    return _build(kind, body, node, text, {C.SESSION}, effect=effect)


def _deallocate(kind: str, body: dict[str, Json], node: Json, text: str) -> Statement:
    name = None if body.get("isall") else body.get("name")
    return _build(kind, body, node, text, {C.SESSION}, effect=SessionEffect("deallocate", name))


def _discard(kind: str, body: dict[str, Json], node: Json, text: str) -> Statement:
    if body.get("target") == "DISCARD_ALL":  # also does SET SESSION AUTHORIZATION DEFAULT
        effect = SessionEffect("discard_all")
        return _build(kind, body, node, text, {C.SESSION, C.ROLE_CHANGE}, effect=effect)
    return _build(kind, body, node, text, {C.SESSION})


def _set(kind: str, body: dict[str, Json], node: Json, text: str) -> Statement:
    name = (body.get("name") or "").lower()
    set_kind = body.get("kind")
    if name in ("role", "session_authorization"):
        return _build(kind, body, node, text, {C.ROLE_CHANGE})
    if name == REASON_SETTING:
        return dataclasses.replace(
            _build(kind, body, node, text, {C.SESSION}, effect=_reason_effect(body)),
            command=f"SET {REASON_SETTING}",
        )
    if set_kind == "VAR_SET_MULTI" and name.startswith("transaction"):
        return _build(kind, body, node, text, {C.TRANSACTION})
    return _build(kind, body, node, text, {C.SESSION})


def _reason_effect(body: dict[str, Json]) -> SessionEffect:
    args = body.get("args") or []
    value = constant(args[0]) if body.get("kind") == "VAR_SET_VALUE" and args else None
    if value is None or value is NOT_CONSTANT or not str(value).strip():
        return SessionEffect("reset_reason")
    return SessionEffect("set_reason", value=str(value).strip())


Handler = Callable[[str, dict[str, Json], Json, str], Statement]
_HANDLERS: dict[str, Handler] = {
    "SelectStmt": _select,
    "InsertStmt": _dml,
    "UpdateStmt": _dml,
    "DeleteStmt": _dml,
    "MergeStmt": _dml,
    "CopyStmt": _copy,
    "CreateTableAsStmt": _create_table_as,
    "TruncateStmt": _truncate,
    "ExplainStmt": _explain,
    "PrepareStmt": _prepare,
    "ExecuteStmt": _execute,
    "DeclareCursorStmt": _declare,
    "FetchStmt": _fetch,
    "ClosePortalStmt": _close,
    "DeallocateStmt": _deallocate,
    "DiscardStmt": _discard,
    "VariableSetStmt": _set,
}
