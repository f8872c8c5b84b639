"""Which relations hold PHI: ``database.schema.table`` patterns with ``*`` wildcards.

Matching is case-insensitive (a quoted ``"Patients"`` counts as ``patients``: a false positive is
safe, a miss is not). A relation named without a schema, or in ``pg_temp``, matches a pattern if a
table of that name in any schema would (search_path can point anywhere). Views, materialized
views and partitions are resolved through the ``view_dependencies`` mapping the gateway builds
from the upstream catalog (see ``policies.views``), transitively.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from policies.statement import TableRef

_MAX_MEMO = 8192  # distinct (database, relation) answers kept; attackers can invent names
_MAX_VIEW_DEPTH = 32  # views of views; the catalog cannot have cycles, a bad mapping might


@dataclass(frozen=True, slots=True)
class PhiPattern:
    text: str
    database: re.Pattern[str]
    schema: re.Pattern[str]
    table: re.Pattern[str]


def split_name(text: str) -> list[str]:
    """Split a dotted name on dots outside double quotes; strip the quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == "." and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted:
        raise ValueError(f"unbalanced double quote in {text!r}")
    parts.append("".join(current))
    return [p.strip() for p in parts]


def parse_pattern(text: str) -> PhiPattern:
    """``clinic.public.lab_*`` → a compiled pattern; ValueError says what is wrong."""
    parts = split_name(text)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"expected database.schema.table (with * wildcards), got {text!r}")
    regexes = [re.compile(fnmatch.translate(p.lower())) for p in parts]
    return PhiPattern(text, regexes[0], regexes[1], regexes[2])


def parse_ref(text: str) -> TableRef:
    """``schema.table`` (as the catalog mapping gives it) → TableRef."""
    parts = [p.lower() for p in split_name(text)]
    return TableRef(name=parts[-1], schema=parts[-2] if len(parts) > 1 else None)


class PhiMatcher:
    """Answers "does this relation hold PHI" for one set of patterns; memoized."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(parse_pattern(p) for p in dict.fromkeys(patterns))
        self._memo: dict[tuple[str, TableRef], bool] = {}

    def is_phi(self, database: str, ref: TableRef) -> bool:
        key = (database, ref)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= _MAX_MEMO:
                self._memo.clear()
            found = self._memo[key] = self._match(database, ref)
        return found

    def touched(
        self,
        database: str,
        refs: Iterable[TableRef],
        views: Mapping[str, Collection[str]],
    ) -> list[str]:
        """Names of the PHI tables ``refs`` read, directly or through views."""
        out: dict[str, None] = {}
        for ref in refs:
            self._collect(database, ref, views, out, 0)
        return list(out)

    def _collect(
        self,
        database: str,
        ref: TableRef,
        views: Mapping[str, Collection[str]],
        out: dict[str, None],
        depth: int,
    ) -> None:
        if self.is_phi(database, ref):
            out[str(ref)] = None
        if not views or depth >= _MAX_VIEW_DEPTH:
            return
        key = f"{ref.schema}.{ref.name}" if ref.schema else ref.name
        for dependency in views.get(key, ()) or views.get(key.lower(), ()):
            self._collect(database, parse_ref(dependency), views, out, depth + 1)

    def _match(self, database: str, ref: TableRef) -> bool:
        databases = {database.lower()} | ({ref.catalog.lower()} if ref.catalog else set())
        schema = (ref.schema or "").lower()
        any_schema = not schema or schema == "pg_temp" or schema.startswith("pg_temp_")
        name = ref.name.lower()
        for pattern in self.patterns:
            if not any(pattern.database.match(db) for db in databases):
                continue
            if not any_schema and not pattern.schema.match(schema):
                continue
            if name == "*" or pattern.table.match(name):
                return True
        return False
