"""What the masking wing reads from the upstream catalog, once per database (and after DDL).

Relations by OID with their columns by attribute number (RowDescription names a result
column's source as table OID + attnum), view definitions (to map view columns to base
columns), the functions masked sessions may call: built-ins that are IMMUTABLE or STABLE
and whose name no function outside ``pg_catalog`` shares (so ``public.lower(int)`` cannot hide
behind the built-in's name), and the functions outside ``pg_catalog`` that operators (by name:
the operand types are not resolved) and casts (by target type; implicit and assignment casts by
function, they run unseen) run, so ``7 ### 0`` is checked like the call it is. Read with the
service credential through ``gateway/policy/catalog.query_rows``; driven by
``gateway/masking/hook.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..policy.catalog import query_rows
from ..settings.config import DatabaseSettings

CATALOG_SQL = """\
SELECT 'c', c.oid::text, n.nspname::text, c.relname::text, c.relkind::text, a.attnum::text,
       a.attname::text
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
                                AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg_toast%'
UNION ALL
SELECT 'v', c.oid::text, n.nspname, c.relname, c.relkind::text, NULL,
       pg_catalog.pg_get_viewdef(c.oid)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
UNION ALL
SELECT 'i', i.inhrelid::text, NULL, NULL, NULL, i.inhparent::text, NULL
  FROM pg_catalog.pg_inherits i
UNION ALL
SELECT DISTINCT 'f', NULL, NULL, p.proname, NULL, NULL, NULL
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.provolatile IN ('i', 's')
   AND p.proname NOT IN (SELECT proname FROM pg_catalog.pg_proc
                          WHERE pronamespace <> 'pg_catalog'::regnamespace)
UNION ALL
SELECT DISTINCT 'o', NULL, n.nspname, o.oprname, NULL, NULL, p.proname
  FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname <> 'pg_catalog'
UNION ALL
SELECT DISTINCT 'k', NULL, n.nspname, t.typname, c.castcontext::text, tn.nspname, p.proname
  FROM pg_catalog.pg_cast c JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_catalog.pg_type t ON t.oid = c.casttarget
  JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
 WHERE n.nspname <> 'pg_catalog'
"""


@dataclass(slots=True)
class Relation:
    oid: int
    schema: str
    name: str
    kind: str
    columns: dict[int, str] = field(default_factory=dict)
    view_sql: str | None = None
    parents: list[int] = field(default_factory=list)  # partitions and inheritance children


@dataclass(frozen=True, slots=True)
class Catalog:
    relations: dict[int, Relation]
    functions: frozenset[str]
    # user functions ("schema.name") behind operator names, cast targets ("type" and
    # "schema.type") and implicit/assignment casts (function -> target type)
    operators: Mapping[str, frozenset[str]] = field(default_factory=dict)
    casts: Mapping[str, frozenset[str]] = field(default_factory=dict)
    implicit: Mapping[str, str] = field(default_factory=dict)

    def by_name(self) -> dict[str, list[Relation]]:
        """"schema.name" and bare "name" → relations (unqualified SQL names any schema)."""
        out: dict[str, list[Relation]] = {}
        for rel in self.relations.values():
            out.setdefault(f"{rel.schema}.{rel.name}".lower(), []).append(rel)
            out.setdefault(rel.name.lower(), []).append(rel)
        return out


def build_catalog(rows: list[tuple[str | None, ...]]) -> Catalog:
    relations: dict[int, Relation] = {}
    functions: set[str] = set()
    parents: list[tuple[int, int]] = []
    operators: dict[str, set[str]] = {}
    casts: dict[str, set[str]] = {}
    implicit: dict[str, str] = {}
    for kind, oid, schema, name, relkind, attnum, text in rows:
        if kind == "f":
            functions.add(str(name))
            continue
        if kind == "o":
            operators.setdefault(str(name), set()).add(f"{schema}.{text}".lower())
            continue
        if kind == "k":
            function, target = f"{schema}.{text}".lower(), f"{attnum}.{name}".lower()
            for key in (target, str(name).lower()):
                casts.setdefault(key, set()).add(function)
            if relkind in ("i", "a"):
                implicit[function] = target
            continue
        if kind == "i":
            parents.append((int(str(oid)), int(str(attnum))))
            continue
        rel = relations.setdefault(int(str(oid)), Relation(int(str(oid)), str(schema),
                                                           str(name), str(relkind)))
        if kind == "c":
            rel.columns[int(str(attnum))] = str(text)
        else:
            rel.view_sql = text
    for child, parent in parents:
        if child in relations:
            relations[child].parents.append(parent)
    return Catalog(relations, frozenset(functions),
                   {k: frozenset(v) for k, v in operators.items()},
                   {k: frozenset(v) for k, v in casts.items()}, implicit)


class MaskingCatalog:
    """Per-database cache of :class:`Catalog`; refreshed after DDL."""

    def __init__(self, max_message_size: int) -> None:
        self._max = max_message_size
        self._cache: dict[str, Catalog] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, db: DatabaseSettings, dbname: str) -> Catalog:
        key = f"{db.name}/{dbname}"
        async with self._locks.setdefault(key, asyncio.Lock()):
            if key not in self._cache:
                rows = await query_rows(db, dbname, CATALOG_SQL, self._max)
                self._cache[key] = build_catalog(rows)
            return self._cache[key]

    def invalidate(self, db: DatabaseSettings, dbname: str) -> None:
        self._cache.pop(f"{db.name}/{dbname}", None)
