"""Masking rules: which result columns a session sees masked, and how.

``phi_columns`` say which columns of a table are identifiers; ``masking`` rules say, for the
sessions they apply to (users, groups, databases), the strategy per column pattern, the content
detectors to run on every text value, what to do with derived output columns (``on_derived``)
and which extra functions masked sessions may call. ``policies.masking_load`` builds these from
YAML; the gateway's masking wing (``gateway/masking/``) resolves a session's
:class:`MaskProfile` once and asks it about each result column. Pure values, no I/O.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from policies.phi import split_name

StrategyKind = Literal["redact", "hash", "partial", "year"]
OnDerived = Literal["deny", "redact"]
STRATEGIES: frozenset[str] = frozenset({"redact", "hash", "partial", "year"})
DETECTORS: frozenset[str] = frozenset({"ssn", "email", "phone", "mrn", "credit_card"})
DEFAULT_MRN_PATTERN = r"\bMRN[-:# ]?\d{6,10}\b"

_STRATEGY = re.compile(r"^\s*(?P<kind>[a-z_]+)\s*(?:\((?P<args>[^)]*)\))?\s*$")


@dataclass(frozen=True, slots=True)
class Strategy:
    """How one column is masked. ``first``/``last``: characters ``partial`` keeps."""

    kind: StrategyKind
    first: int = 0
    last: int = 0

    def __str__(self) -> str:
        if self.kind != "partial":
            return self.kind
        args = [f"{k}={v}" for k, v in (("first", self.first), ("last", self.last)) if v]
        return f"partial({', '.join(args)})"


REDACT = Strategy("redact")


def parse_strategy(text: str) -> Strategy:
    """``partial(last=4)`` → Strategy; ValueError says what is wrong."""
    match = _STRATEGY.match(text)
    if not match or match["kind"] not in STRATEGIES:
        raise ValueError(f"unknown masking strategy {text!r}: use redact, hash, year, "
                         "partial(last=N) or partial(first=N, last=N)")
    kind, args = match["kind"], (match["args"] or "").strip()
    if kind != "partial":
        if args:
            raise ValueError(f"strategy {kind} takes no arguments")
        return Strategy(kind)  # type: ignore[arg-type]
    keep = {"first": 0, "last": 0}
    for item in filter(None, (a.strip() for a in args.split(","))):
        name, _, value = item.partition("=")
        if name.strip() not in keep or not value.strip().isdigit():
            raise ValueError(f"bad partial argument {item!r}: use first=N or last=N")
        keep[name.strip()] = int(value)
    if not keep["first"] and not keep["last"]:
        raise ValueError("partial needs first=N or last=N (N > 0)")
    return Strategy("partial", first=keep["first"], last=keep["last"])


@dataclass(frozen=True, slots=True)
class ColumnPattern:
    """``database.schema.table.column`` with ``*`` wildcards, case-insensitive."""

    text: str
    parts: tuple[re.Pattern[str], ...]

    def matches(self, database: str, schema: str, table: str, column: str) -> bool:
        names = (database, schema, table, column)
        return all(p.match(n.lower()) for p, n in zip(self.parts, names, strict=True))

    def matches_table(self, database: str, schema: str, table: str) -> bool:
        names = (database, schema, table)
        return all(p.match(n.lower()) for p, n in zip(self.parts, names, strict=False))


def parse_column_pattern(text: str) -> ColumnPattern:
    parts = split_name(text)
    if len(parts) != 4 or not all(parts):
        raise ValueError(f"expected database.schema.table.column (with * wildcards), "
                         f"got {text!r}")
    return ColumnPattern(text, tuple(re.compile(fnmatch.translate(p.lower())) for p in parts))


@dataclass(frozen=True, slots=True)
class MaskingRule:
    """One entry of ``masking:``. ``None`` for users/groups/databases means "any"."""

    name: str
    source: str
    columns: tuple[tuple[ColumnPattern, Strategy], ...] = ()
    detect: frozenset[str] = frozenset()
    mrn_pattern: str = DEFAULT_MRN_PATTERN
    on_derived: OnDerived = "deny"
    functions: frozenset[str] = frozenset()
    users: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    databases: frozenset[str] | None = None

    def applies(self, identity: str, groups: frozenset[str], database: str) -> bool:
        if self.users is not None or self.groups is not None:
            in_users = self.users is not None and identity in self.users
            in_groups = self.groups is not None and not self.groups.isdisjoint(groups)
            if not (in_users or in_groups):
                return False
        return self.databases is None or database in self.databases


@dataclass(frozen=True, slots=True)
class MaskProfile:
    """What masking means for one session: merged from every masking rule that applies.

    A column is masked when it is an identifier (``phi_columns``, or every column of a PHI
    table that lists none) or named by a rule's non-wildcard column pattern; its strategy is
    the first matching rule pattern, else ``redact``. ``on_derived`` is ``deny`` if any rule
    says so. ``rules`` names the masking rules, for the journal.
    """

    database: str
    rules: tuple[str, ...]
    columns: tuple[tuple[ColumnPattern, Strategy], ...]
    phi_columns: tuple[ColumnPattern, ...]
    phi_tables: tuple[ColumnPattern, ...]  # PHI tables without phi_columns: every column
    detect: frozenset[str] = frozenset()
    mrn_pattern: str = DEFAULT_MRN_PATTERN
    on_derived: OnDerived = "deny"
    functions: frozenset[str] = frozenset()
    _memo: dict[tuple[str, str, str], Strategy | None] = field(
        default_factory=dict, compare=False, repr=False)

    def strategy(self, schema: str, table: str, column: str) -> Strategy | None:
        """The strategy for a base-table column, or None when it is shown as it is."""
        key = (schema, table, column)
        if key not in self._memo:
            self._memo[key] = self._resolve(schema, table, column)
        return self._memo[key]

    def _resolve(self, schema: str, table: str, column: str) -> Strategy | None:
        db = self.database
        identifier = any(p.matches(db, schema, table, column) for p in self.phi_columns) or any(
            p.matches_table(db, schema, table) for p in self.phi_tables)
        for pattern, strategy in self.columns:
            if not pattern.matches(db, schema, table, column):
                continue
            if identifier or "*" not in pattern.text.rsplit(".", 1)[-1]:
                return strategy
        return REDACT if identifier else None

    def has_masked_columns(self, schema: str, table: str) -> bool:
        db = self.database
        return any(p.matches_table(db, schema, table) for p in self.phi_columns) or any(
            p.matches_table(db, schema, table) for p in self.phi_tables) or any(
            p.matches_table(db, schema, table) and "*" not in p.text.rsplit(".", 1)[-1]
            for p, _ in self.columns)


def table_patterns(phi_tables: Iterable[str]) -> tuple[ColumnPattern, ...]:
    return tuple(parse_column_pattern(f"{t}.*") for t in phi_tables)


def build_profile(rules: Sequence[MaskingRule], *, database: str,
                  phi_columns: Sequence[ColumnPattern], phi_tables: Sequence[str],
                  forced: bool = False) -> MaskProfile | None:
    """The profile of the masking rules that apply, or None when none applies.

    ``forced`` (a ``phi: masked`` rule allowed the statement) makes a profile even without an
    applying masking rule: identifiers are then redacted and derived columns refused.
    """
    if not rules and not forced:
        return None
    listed = {".".join(split_name(p.text)[:3]).lower() for p in phi_columns}
    whole = [t for t in phi_tables if t.lower() not in listed]
    return MaskProfile(
        database=database,
        rules=tuple(r.name for r in rules),
        columns=tuple(c for r in rules for c in r.columns),
        phi_columns=tuple(phi_columns),
        phi_tables=table_patterns(whole),
        detect=frozenset(d for r in rules for d in r.detect),
        mrn_pattern=next((r.mrn_pattern for r in rules if "mrn" in r.detect),
                         DEFAULT_MRN_PATTERN),
        on_derived="redact" if rules and all(r.on_derived == "redact" for r in rules)
        else "deny",
        functions=frozenset(f for r in rules for f in r.functions),
    )
