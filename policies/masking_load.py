"""YAML → ``phi_columns`` and ``masking`` rules, with ``file:line: key.path:`` errors.

Called by ``policies.loader`` for the two top-level keys; shares its validator so messages and
unknown-key suggestions look the same as for access rules.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from policies.masking import (
    DEFAULT_MRN_PATTERN,
    DETECTORS,
    ColumnPattern,
    MaskingRule,
    OnDerived,
    Strategy,
    parse_column_pattern,
    parse_strategy,
)
from policies.phi import parse_pattern
from policies.yamlsource import LocatedList, LocatedMap

if TYPE_CHECKING:
    from policies.loader import _Validator

MASKING_KEYS = frozenset({"name", "description", "users", "groups", "databases", "columns",
                          "detect", "mrn_pattern", "on_derived", "functions"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_FUNCTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


def phi_columns(v: _Validator, data: LocatedMap) -> tuple[ColumnPattern, ...]:
    """``phi_columns: {db.schema.table: [col, ...]}`` → column patterns."""
    if "phi_columns" not in data:
        return ()
    value = data["phi_columns"]
    if not isinstance(value, LocatedMap):
        v.fail(data.key_lines["phi_columns"], "phi_columns",
               "expected a mapping of database.schema.table to a list of columns")
    out: list[ColumnPattern] = []
    for table in value:
        path = f"phi_columns.{table}"
        try:
            parse_pattern(table)
        except ValueError as e:
            v.fail(value.key_lines[table], path, str(e), cause=e)
        for column in v.string_list(value, table, path) or ():
            out.append(_column(v, value.key_lines[table], path, f"{table}.{column}"))
    return tuple(out)


def masking_rules(v: _Validator, data: LocatedMap) -> tuple[MaskingRule, ...]:
    if "masking" not in data or data["masking"] is None:
        return ()
    items = data["masking"]
    if not isinstance(items, LocatedList):
        v.fail(data.key_lines["masking"], "masking", "expected a list of masking rules")
    out: list[MaskingRule] = []
    for index, item in enumerate(items):
        path = f"masking[{index}]"
        if not isinstance(item, LocatedMap):
            v.fail(items.item_lines[index], path, "expected a mapping (a masking rule)")
        rule = _rule(v, item, path)
        if any(r.name == rule.name for r in out):
            v.fail(item.key_lines["name"], f"{path}.name",
                   f"duplicate masking rule name {rule.name!r}")
        out.append(rule)
    return tuple(out)


def _rule(v: _Validator, data: LocatedMap, path: str) -> MaskingRule:
    v.check_keys(data, path, MASKING_KEYS)
    name = v.string(data, "name", f"{path}.name")
    if name is None or not _NAME.match(name):
        v.fail(data.key_lines.get("name", data.line), f"{path}.name",
               "every masking rule needs a name of letters, digits, '-', '_', '.', ':'")
    detect = v.string_list(data, "detect", f"{path}.detect") or ()
    for index, item in enumerate(detect):
        if item not in DETECTORS:
            v.fail(data["detect"].item_lines[index], f"{path}.detect[{index}]",
                   f"unknown detector {item!r}: use {', '.join(sorted(DETECTORS))}")
    mrn = v.string(data, "mrn_pattern", f"{path}.mrn_pattern") or DEFAULT_MRN_PATTERN
    try:
        re.compile(mrn)
    except re.error as e:
        v.fail(data.key_lines["mrn_pattern"], f"{path}.mrn_pattern", f"bad regex: {e}", cause=e)
    functions = v.string_list(data, "functions", f"{path}.functions") or ()
    for index, item in enumerate(functions):
        if not _FUNCTION.match(item):
            v.fail(data["functions"].item_lines[index], f"{path}.functions[{index}]",
                   f"expected a function name (optionally schema.name), got {item!r}")
    columns = _columns(v, data, path)
    if not columns and not detect:
        v.fail(data.line, path, "masking rule masks nothing (give columns or detect)")
    groups = v.string_list(data, "groups", f"{path}.groups")
    users = v.string_list(data, "users", f"{path}.users")
    databases = v.string_list(data, "databases", f"{path}.databases")
    return MaskingRule(
        name=name, source=f"{v.source}:{data.line}", columns=columns,
        detect=frozenset(detect), mrn_pattern=mrn, on_derived=_on_derived(v, data, path),
        functions=frozenset(f.lower() for f in functions),
        users=None if users is None else frozenset(users),
        groups=None if groups is None else frozenset(groups),
        databases=None if databases is None else frozenset(databases))


def _columns(v: _Validator, data: LocatedMap, path: str
             ) -> tuple[tuple[ColumnPattern, Strategy], ...]:
    if "columns" not in data:
        return ()
    value = data["columns"]
    if not isinstance(value, LocatedMap) or not value:
        v.fail(data.key_lines["columns"], f"{path}.columns",
               "expected a mapping of database.schema.table.column to a strategy")
    out = []
    for column, strategy_text in value.items():
        key, line = f"{path}.columns.{column}", value.key_lines[column]
        pattern = _column(v, line, key, column)
        if not isinstance(strategy_text, str):
            v.fail(line, key, f"expected a strategy, got {strategy_text!r}")
        try:
            out.append((pattern, parse_strategy(strategy_text)))
        except ValueError as e:
            v.fail(line, key, str(e), cause=e)
    return tuple(out)


def _column(v: _Validator, line: int, key: str, text: str) -> ColumnPattern:
    try:
        return parse_column_pattern(text)
    except ValueError as e:
        v.fail(line, key, str(e), cause=e)


def _on_derived(v: _Validator, data: LocatedMap, path: str) -> OnDerived:
    value = data.get("on_derived", "deny")
    if value not in ("deny", "redact"):
        v.fail(data.key_lines["on_derived"], f"{path}.on_derived",
               f"expected deny or redact, got {value!r}")
    return "redact" if value == "redact" else "deny"
