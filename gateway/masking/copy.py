"""COPY ... TO STDOUT in a masked session: plan the columns from the statement, mask each row.

COPY sends no RowDescription, so the columns come from the statement: ``COPY table (cols)``
uses the table's columns from the catalog (every relation of that name, the strictest plan
per column); ``COPY (query)`` uses the taint analysis of the query's outputs (a plain masked
column keeps its strategy, any other expression over masked columns is DERIVED; ``*`` over
masked relations is refused: list the columns). Text and CSV rows are split, masked and
rejoined with the statement's delimiter, NULL string and quoting; binary COPY of masked
columns is refused. Driven by ``gateway/masking/filter.py`` and ``hook.py``.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pglast import parse_sql, parser
from pglast.stream import RawStream

from policies.detectors import Detector
from policies.masking import Strategy
from policies.sqltree import string_list, unwrap
from policies.taint import CLEAN, output_taint

from ..errors import PolicyDenied
from .columns import DERIVED, ColumnMap, Plan
from .rows import derived_refusal
from .values import REDACTED, mask_text

BINARY_REFUSED = PolicyDenied(
    "phigate: binary COPY of masked columns is refused (masking cannot rewrite it)",
    hint="use COPY ... TO STDOUT with FORMAT text or csv")
STAR_REFUSED = PolicyDenied(
    "phigate: COPY (SELECT * ...) of masked tables is refused: the gateway cannot tell "
    "which column is which", hint="list the columns in the query")


@dataclass(frozen=True, slots=True)
class CopyPlan:
    csv: bool
    delimiter: str
    null: str
    header: bool
    quote: str
    plans: tuple[Plan, ...]  # per column; an empty tuple: unknown width, detect only


def copy_plan(sql: str, column_map: ColumnMap, tables: tuple[str, ...]) -> CopyPlan | None:
    """The plan of a ``COPY ... TO`` statement (None: not one); raises PolicyDenied."""
    try:
        root = json.loads(parser.parse_sql_json(sql))["stmts"][0]["stmt"]
    except Exception:
        return None
    kind, body = unwrap(root)
    if kind != "CopyStmt" or body.get("is_from"):
        return None
    options = {o["DefElem"]["defname"]: _option(o["DefElem"]) for o in body.get("options", [])}
    fmt = str(options.get("format", "text")).lower()
    is_csv = fmt == "csv"
    plans = (_query_plans(sql, column_map, tables) if "query" in body
             else _table_plans(body, column_map))
    if fmt == "binary" and any(p is not None for p in plans):
        raise BINARY_REFUSED
    if DERIVED in plans and column_map.profile.on_derived == "deny":
        raise derived_refusal(f"column {plans.index(DERIVED) + 1} of the COPY")
    return CopyPlan(csv=is_csv, delimiter=str(options.get("delimiter", "," if is_csv else "\t")),
                    null=str(options.get("null", "" if is_csv else "\\N")),
                    header=options.get("header", False) not in (False, "false", "off", 0),
                    quote=str(options.get("quote", '"')), plans=plans)


def _option(element: dict[str, Any]) -> object:
    kind, arg = unwrap(element.get("arg"))
    if kind == "String":
        return arg.get("sval", "")
    if kind == "Boolean":
        return arg.get("boolval", False)
    if kind == "Integer":
        return arg.get("ival", 0)
    return True


def _table_plans(body: dict[str, Any], column_map: ColumnMap) -> tuple[Plan, ...]:
    relation = body.get("relation", {})
    name = ".".join(p for p in (relation.get("schemaname"), relation.get("relname")) if p)
    candidates = column_map.catalog.by_name().get(name.lower(), [])
    if not candidates:
        return ()
    listed = string_list(body.get("attlist"))
    columns = list(listed) or [candidates[0].columns[k] for k in sorted(candidates[0].columns)]
    out: list[Plan] = []
    for column in columns:
        plans = [column_map.plan(rel.oid, attnum) for rel in candidates
                 for attnum, attname in rel.columns.items() if attname == column]
        out.append(_strictest(plans))
    return tuple(out)


def _strictest(plans: list[Plan]) -> Plan:
    if any(p is DERIVED for p in plans):
        return DERIVED
    masked = [p for p in plans if p is not None]
    if len(set(map(str, masked))) > 1:
        return Strategy("redact")
    return masked[0] if masked else None


def _query_plans(sql: str, column_map: ColumnMap, tables: tuple[str, ...]
                 ) -> tuple[Plan, ...]:
    relations = column_map.relations_for(tables)
    outputs = output_taint(_inner_query(sql), column_map.names_for(tables))
    if outputs is None:
        raise STAR_REFUSED
    out: list[Plan] = []
    for output in outputs:
        if output.column is not None:
            out.append(column_map.named(output.column, relations))
        else:
            out.append(None if output.taint == CLEAN else DERIVED)
    return tuple(out)


def _inner_query(sql: str) -> str:
    """The query of ``COPY (query) TO``, as SQL text (deparsed from the parse tree)."""
    statement: Any = parse_sql(sql)[0].stmt
    return str(RawStream()(statement.query))


class CopyMasker:
    """Rewrites COPY TO CopyData frames of text or CSV rows."""

    __slots__ = ("_plan", "_key", "_detector", "_rows", "_found", "rules", "_masked")

    def __init__(self, plan: CopyPlan, key: bytes, detector: Detector | None,
                 rules: Sequence[str]) -> None:
        self._plan, self._key, self._detector = plan, key, detector
        self._rows = 0
        self._found: Counter[str] = Counter()
        self.rules = tuple(rules)
        self._masked = {str(i + 1): str(p) for i, p in enumerate(plan.plans) if p is not None}

    @classmethod
    def start(cls, plan: CopyPlan, binary: bool, key: bytes, detector: Detector | None,
              rules: Sequence[str]) -> CopyMasker | None:
        if binary:
            if any(p is not None for p in plan.plans) or detector is not None:
                raise BINARY_REFUSED
            return None
        if not any(p is not None for p in plan.plans) and detector is None:
            return None
        return cls(plan, key, detector, rules)

    def transform(self, frame: bytes) -> bytes:
        self._rows += 1
        if self._rows == 1 and self._plan.header:
            return frame
        line = frame[5:].decode("utf-8", "replace")
        ending = "\r\n" if line.endswith("\r\n") else "\n" if line.endswith("\n") else ""
        body = line[:len(line) - len(ending)]
        masked = self._csv(body) if self._plan.csv else self._text(body)
        data = (masked + ending).encode("utf-8")
        return b"d" + (len(data) + 4).to_bytes(4, "big") + data

    def _field(self, index: int, value: str) -> str:
        plans = self._plan.plans
        plan = plans[index] if index < len(plans) else (DERIVED if plans else None)
        if isinstance(plan, Strategy):
            return mask_text(value, plan, self._key) or REDACTED
        if plan is DERIVED:
            return REDACTED
        if self._detector is not None:
            scrubbed, kinds = self._detector.scrub(value)
            self._found.update(kinds)
            return scrubbed
        return value

    def _text(self, body: str) -> str:
        out = []
        for index, raw in enumerate(body.split(self._plan.delimiter)):
            if raw == self._plan.null:
                out.append(raw)
                continue
            value = _text_unescape(raw)
            out.append(_text_escape(self._field(index, value), self._plan.delimiter))
        return self._plan.delimiter.join(out)

    def _csv(self, body: str) -> str:
        plan = self._plan
        fields = next(csv.reader([body], delimiter=plan.delimiter, quotechar=plan.quote))
        out = io.StringIO()
        writer = csv.writer(out, delimiter=plan.delimiter, quotechar=plan.quote,
                            lineterminator="", quoting=csv.QUOTE_MINIMAL)
        writer.writerow([f if f == plan.null else self._field(i, f)
                         for i, f in enumerate(fields)])
        return out.getvalue()

    def report(self) -> dict[str, object]:
        out: dict[str, object] = {"rules": list(self.rules)}
        if self._masked:
            out["masked"] = dict(self._masked)
        if self._found:
            out["detected"] = dict(self._found)
        return out


_UNESCAPE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _text_unescape(raw: str) -> str:
    if "\\" not in raw:
        return raw
    out, chars = [], iter(raw)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append(_UNESCAPE.get(nxt, nxt))
        else:
            out.append(char)
    return "".join(out)


def _text_escape(value: str, delimiter: str) -> str:
    value = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return value.replace("\t", "\\t").replace(delimiter, "\\" + delimiter)
