"""Which relations hold PHI: ``database.schema.table`` patterns with ``*`` wildcards.

Matching is case-insensitive (a quoted ``"Patients"`` counts as ``patients``: a false positive is
safe, a miss is not). A relation named without a schema, or in ``pg_temp``, matches a pattern if a
table of that name in any schema would (search_path can point anywhere). Views, materialized
views and partitions are resolved through the ``view_dependencies`` mapping the gateway builds
from the upstream catalog (see ``policies.views``), transitively.

The catalog can hold cycles (``CREATE OR REPLACE VIEW`` can make two views refer to each other;
PostgreSQL then answers "infinite recursion detected in rules"), so the walk visits each relation
once and charges a :class:`~policies.steps.Steps` budget for every relation and dependency: a
cycle ends the walk with every relation on it counted as touched, and a graph too large for the
budget raises :class:`~policies.steps.StepsExceeded` rather than keeping the engine busy.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from policies.statement import TableRef
from policies.steps import Steps
from policies.views import Unsettled

_MAX_MEMO = 8192  # distinct (database, relation) answers kept; attackers can invent names


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


@functools.lru_cache(maxsize=_MAX_MEMO)
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

    def every(self, database: str) -> list[str]:
        """Every PHI pattern of ``database``: what a read of unknown reach touches."""
        return [p.text for p in self.patterns if p.database.match(database.lower())]

    def touched(
        self,
        database: str,
        refs: Iterable[TableRef],
        views: Mapping[str, Collection[str]],
        steps: Steps | None = None,
    ) -> list[str]:
        """Names of the PHI tables ``refs`` read, directly or through views, in walk order.

        Depth first, each relation once (a visited set), so a cycle of views ends the walk and
        every relation on it is checked; ``steps`` bounds the whole walk. Over
        :class:`~policies.views.Unsettled` dependencies, any relation read reads every PHI
        table of the database.
        """
        budget = steps if steps is not None else Steps()
        out: dict[str, None] = {}
        if isinstance(views, Unsettled):
            refs = list(refs)
            if refs:
                out.update(dict.fromkeys(self.every(database)))
        seen: set[TableRef] = set()
        stack = list(refs)[::-1]  # popped from the end: the statement's own order first
        while stack:
            ref = stack.pop()
            if ref in seen:
                continue
            seen.add(ref)
            budget.take()
            if self.is_phi(database, ref):
                out[str(ref)] = None
            if views:
                dependencies = view_dependencies_of(views, ref)
                budget.take(len(dependencies))
                stack.extend(parse_ref(d) for d in dependencies)
        return list(out)

    def in_every_schema(self, database: str, ref: TableRef) -> bool:
        """Whether a pattern with schema ``*`` matches the name: a PHI table in any schema."""
        name = ref.name.lower()
        return any(p.database.match(database.lower()) and split_name(p.text)[1] == "*"
                   and p.table.match(name) for p in self.patterns)

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


def view_dependencies_of(views: Mapping[str, Collection[str]], ref: TableRef
                         ) -> Collection[str]:
    """What the catalog says ``ref`` reads (a view's sources, a child's parents)."""
    key = f"{ref.schema}.{ref.name}" if ref.schema else ref.name
    return views.get(key, ()) or views.get(key.lower(), ())
