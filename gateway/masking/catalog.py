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

What is read is forgotten whenever the policy's catalog may have changed (its change signal,
``Catalogs.subscribe``: DDL through the gateway ended its transaction, the polled fingerprint
moved, a lookup found it moved) and read again by the next masked statement of the database. A
read that a change overtook is not kept; a result column from a source the catalog does not
list makes the next statement read it again (once per source until the next change).
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
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
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


MAX_READS = 5  # reads one statement starts while changes keep overtaking them, then refused
MAX_ASKED = 4096  # unlisted sources remembered until the next change; sessions can invent them
Source = tuple[int, int]  # (table OID, attnum) as RowDescription gives it


class CatalogChanging(Exception):
    """Every read was overtaken by another change: nothing read can be trusted."""


@dataclass(slots=True)
class _Database:
    catalog: Catalog | None = None  # None: read it before the next masked statement
    generation: int = 0  # counts what made the catalog be forgotten
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    asked: set[Source] = field(default_factory=set)  # unlisted sources read again for


class MaskingCatalog:
    """Per-database :class:`Catalog`, forgotten on every change signal (:meth:`changed`)."""

    def __init__(self, max_message_size: int) -> None:
        self._max = max_message_size
        self._databases: dict[str, _Database] = {}

    def _database(self, db: DatabaseSettings, dbname: str) -> _Database:
        return self._databases.setdefault(f"{db.name}/{dbname}", _Database())

    def current(self, db: DatabaseSettings, dbname: str) -> Catalog | None:
        """The catalog in force, or None when it must be read (no I/O)."""
        return self._database(db, dbname).catalog

    async def get(self, db: DatabaseSettings, dbname: str) -> Catalog:
        """The catalog in force, read first if need be, in a read no change overtook.
        Raises CatalogChanging, or what the read raised."""
        entry = self._database(db, dbname)
        async with entry.lock:
            for _ in range(MAX_READS):
                if entry.catalog is not None:
                    return entry.catalog
                generation = entry.generation
                rows = await query_rows(db, dbname, CATALOG_SQL, self._max)
                if entry.generation == generation:  # else it may predate the change: again
                    entry.catalog = build_catalog(rows)
            raise CatalogChanging(f"the catalog of {db.name} kept changing while it was read")

    def changed(self, db: DatabaseSettings, dbname: str) -> None:
        """The catalog may have changed: forget it (also a read under way)."""
        entry = self._database(db, dbname)
        entry.catalog, entry.generation = None, entry.generation + 1
        entry.asked.clear()

    def unlisted(self, db: DatabaseSettings, dbname: str, catalog: Catalog,
                 source: Source) -> None:
        """A result column came from a source ``catalog`` does not list (made since it was
        read): read again before the next statement, unless a read since it was first seen
        did not list it either."""
        entry = self._database(db, dbname)
        if entry.catalog is not catalog or source in entry.asked:
            return
        if len(entry.asked) >= MAX_ASKED:
            entry.asked.clear()
        entry.asked.add(source)
        entry.catalog, entry.generation = None, entry.generation + 1
