"""Offline preview of masking (``phigate policy check`` / ``policy test``): which output
columns a statement's result would carry masked, and how.

Without the live catalog this reads the statement itself: an output that is a plain reference
to an identifier of a table the statement names gets that column's strategy; an expression
over identifiers is ``refused`` or ``redacted`` whole (``on_derived``); anything else is
``clear``. Unqualified table names are taken to be in ``public``. ``*`` is reported as one
entry (identifiers masked by provenance at run time). The gateway itself decides from
RowDescription (``gateway/masking``); this is the author's view of the same rules.
"""

from __future__ import annotations

import json

from pglast import parser

from policies.masking import MaskProfile
from policies.phi import parse_ref
from policies.sqltree import unwrap
from policies.taint import CLEAN, output_taint


def preview(profile: MaskProfile, sql: str, tables: tuple[str, ...]) -> dict[str, str]:
    """Output column label → strategy, ``refused``, ``redacted``, ``clear`` or ``*``."""
    refs = [parse_ref(t) for t in tables]
    names = {c for ref in refs for c in _identifier_names(profile, ref.schema, ref.name)}
    outputs = output_taint(sql, frozenset(names))
    labels = _labels(sql)
    if outputs is None or labels is None or len(labels) != len(outputs):
        return {"*": "masked by provenance at run time"}
    derived = "refused" if profile.on_derived == "deny" else "redacted"
    out: dict[str, str] = {}
    for label, output in zip(labels, outputs, strict=True):
        if output.column is not None:
            strategy = next((profile.strategy(ref.schema or "public", ref.name, output.column)
                             for ref in refs if profile.strategy(
                                 ref.schema or "public", ref.name, output.column)), None)
            out[label] = str(strategy) if strategy is not None else derived
        else:
            out[label] = "clear" if output.taint == CLEAN else derived
    return out


def _identifier_names(profile: MaskProfile, schema: str | None, table: str) -> set[str]:
    schema = schema or "public"
    listed = {p.text.rsplit(".", 1)[-1].lower() for p in profile.phi_columns
              if p.matches_table(profile.database, schema, table)}
    listed |= {p.text.rsplit(".", 1)[-1].lower() for p, _ in profile.columns
               if p.matches_table(profile.database, schema, table)}
    return {n for n in listed if "*" not in n and profile.strategy(schema, table, n)}


def _labels(sql: str) -> list[str] | None:
    try:
        stmt = json.loads(parser.parse_sql_json(sql))["stmts"][0]["stmt"]
    except Exception:
        return None
    kind, body = unwrap(stmt)
    while kind == "SelectStmt" and body.get("op", "SETOP_NONE") != "SETOP_NONE":
        body = body.get("larg", {})
    if kind != "SelectStmt":
        return None
    labels = []
    for target in body.get("targetList", []):
        res = unwrap(target)[1]
        value_kind, value = unwrap(res.get("val"))
        if res.get("name"):
            labels.append(res["name"])
        elif value_kind == "ColumnRef":
            labels.append(unwrap(value.get("fields", [{}])[-1])[1].get("sval", "?column?"))
        elif value_kind == "FuncCall":
            labels.append(unwrap(value.get("funcname", [{}])[-1])[1].get("sval", "?column?"))
        else:
            labels.append("?column?")
    return labels
