"""Which result columns of a session carry masked values: one map per (catalog, profile).

A result column's source (table OID, attnum) from RowDescription is looked up here: a base
table column gets its profile strategy (a partition's or inheritance child's column that of
its parent's column of the same name); a view column is mapped through the view's definition
(``policies.taint``): a plain reference to a masked column gets that column's strategy, any
other expression over masked columns is :data:`DERIVED` (refused or redacted whole, as
``on_derived`` says). Views of views are followed to a fixpoint; what cannot be resolved is
DERIVED. Built by ``gateway/masking/hook.py`` at session start, read per result.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from policies.masking import REDACT, MaskProfile, Strategy
from policies.phi import parse_ref
from policies.taint import CLEAN, output_taint, relation_names

from .catalog import Catalog, Relation


class Derived:
    """The column is computed from masked columns: never shown as it is."""

    def __str__(self) -> str:
        return "derived"


DERIVED: Final = Derived()
Plan = Strategy | Derived | None
# OIDs below this are assigned by initdb (pg_catalog, information_schema); every relation made
# later, and every one that may hold identifiers, has a larger one (PostgreSQL's
# FirstNormalObjectId)
FIRST_NORMAL_OID = 16384
_MAX_VIEW_ROUNDS = 16  # views of views resolved per round; deeper chains are DERIVED


class ColumnMap:
    __slots__ = ("catalog", "profile", "plans",
                 "_by_name")

    def __init__(self, catalog: Catalog, profile: MaskProfile) -> None:
        self.catalog, self.profile = catalog, profile
        self.plans: dict[tuple[int, int], Plan] = {}
        self._by_name: dict[str, list[Relation]] | None = None
        for rel in catalog.relations.values():
            if rel.view_sql is None:
                for attnum, column in rel.columns.items():
                    self.plans[(rel.oid, attnum)] = self._base(rel, column)
        self._views([r for r in catalog.relations.values() if r.view_sql is not None])

    def plan(self, table_oid: int, attnum: int) -> Plan:
        return self.plans.get((table_oid, attnum))

    def lists(self, table_oid: int, attnum: int) -> bool:
        """Whether the catalog read lists this column, or it is one of the system's own
        (their OIDs are below :data:`FIRST_NORMAL_OID`: no identifier is kept there)."""
        return table_oid < FIRST_NORMAL_OID or (table_oid, attnum) in self.plans

    def names_for(self, tables: Iterable[str]) -> frozenset[str]:
        """Masked (or derived) column names of the relations a statement names: what its
        output expressions are checked against."""
        return self._names_of(self.relations_for(tables))

    def relations_for(self, tables: Iterable[str]) -> list[Relation]:
        """Every relation a name may mean (any schema, when unqualified)."""
        if self._by_name is None:
            self._by_name = self.catalog.by_name()
        out: list[Relation] = []
        for text in tables:
            ref = parse_ref(text)
            key = f"{ref.schema}.{ref.name}" if ref.schema else ref.name
            out.extend(self._by_name.get(key.lower(), ()))
        return out

    def named(self, column: str, relations: list[Relation]) -> Plan:
        """The plan of a plain reference to ``column`` of one of ``relations``."""
        plans = [self.plans.get((rel.oid, attnum)) for rel in relations
                 for attnum, name in rel.columns.items() if name.lower() == column]
        masked = {str(p): p for p in plans if p is not None}
        if not masked:
            return None
        if "derived" in masked:
            return DERIVED
        # the same name masked differently in different relations: the strictest
        return next(iter(masked.values())) if len(masked) == 1 else REDACT

    def _names_of(self, relations: list[Relation]) -> frozenset[str]:
        return frozenset(column.lower() for rel in relations
                         for attnum, column in rel.columns.items()
                         if self.plans.get((rel.oid, attnum)) is not None)

    def _base(self, rel: Relation, column: str) -> Strategy | None:
        strategy = self.profile.strategy(rel.schema, rel.name, column)
        for parent_oid in rel.parents:  # a partition holds its parent's identifiers
            parent = self.catalog.relations.get(parent_oid)
            if parent is not None and strategy is None:
                strategy = self._base(parent, column)
        return strategy

    def _views(self, views: list[Relation]) -> None:
        """Map view columns; repeat while a round changes a plan (views of views)."""
        for _ in range(_MAX_VIEW_ROUNDS):
            before = {k: str(v) for k, v in self.plans.items()}
            for view in views:
                self._view(view)
            if {k: str(v) for k, v in self.plans.items()} == before:
                return
        for view in views:  # still moving after many rounds: trust none of it
            for attnum in view.columns:
                self.plans[(view.oid, attnum)] = DERIVED

    def _view(self, view: Relation) -> None:
        sql = view.view_sql or ""
        relations = self.relations_for(relation_names(sql))
        outputs = output_taint(sql, self._names_of(relations))
        for attnum in view.columns:
            if outputs is None or len(outputs) != len(view.columns):
                plan: Plan = DERIVED
            else:
                out = outputs[attnum - 1]
                plan = (self.named(out.column, relations) if out.column is not None
                        else None if out.taint == CLEAN else DERIVED)
            self.plans[(view.oid, attnum)] = plan
