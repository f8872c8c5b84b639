"""View and partition dependencies: the catalog query the gateway runs, and the mapping it feeds.

Reading a view (or materialized view) of ``patients`` reads ``patients``; so does reading a
partition or inheritance child of it, and reading a parent reads its children's rows too (a
PHI table made a child or partition of another table by ``INHERIT``/``ATTACH PARTITION``).
The gateway runs ``SNAPSHOT_SQL`` (``CATALOG_SQL``, the names of every relation and the
catalog's fingerprint, ``policies.fingerprint``, in one snapshot) against the upstream when a
database's first session starts and whenever its catalog may have changed, passes the
dependency rows to ``build_view_dependencies``, and hands the result to every
``RequestContext``. While the gateway cannot know what a session's relations mean (its DDL is
not committed yet), it hands :class:`Unsettled` instead: every relation read then counts as
reading every PHI table (``policies.phi.PhiMatcher.touched``). This module only describes and
transforms; it runs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from policies.fingerprint import FINGERPRINT_EXPRESSION

# Rows: (view_schema, view_name, table_schema, table_name) — one per direct dependency.
CATALOG_SQL = """\
SELECT DISTINCT vn.nspname, v.relname, tn.nspname, t.relname
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::regclass
                              AND d.objid = r.oid
  JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
  JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
  JOIN pg_catalog.pg_class t ON d.refclassid = 'pg_catalog.pg_class'::regclass
                            AND t.oid = d.refobjid
  JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
 WHERE v.relkind IN ('v', 'm') AND t.oid <> v.oid AND t.relkind IN ('r', 'p', 'v', 'm', 'f')
UNION
SELECT r.* FROM pg_catalog.pg_inherits i
  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
  JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
  JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
  CROSS JOIN LATERAL (VALUES (cn.nspname, c.relname, pn.nspname, p.relname),
                             (pn.nspname, p.relname, cn.nspname, c.relname)) r
"""

Row = tuple[str, str, str, str]

# Rows: (kind, a, b, c, d) in one snapshot — ("fingerprint", text, …), ("depends", the four
# columns of CATALOG_SQL), ("relation", schema, name, …) for every relation a statement can read.
SNAPSHOT_SQL = f"""\
SELECT 'fingerprint', {FINGERPRINT_EXPRESSION}, NULL, NULL, NULL
UNION ALL
SELECT 'depends', d.* FROM ({CATALOG_SQL.strip()}) d
UNION ALL
SELECT 'relation', n.nspname, c.relname, NULL, NULL
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
"""

_TEMP_SCHEMA = "pg_temp"
# Statement classes that may change the catalog: DDL, and code that can run DDL (DO, CALL).
CATALOG_CHANGING = frozenset({"ddl", "call"})
EARLIER_IN_QUERY = "DDL earlier in this query string"
# Classes whose statements read no relation's rows: Unsettled does not apply to them.
READS_NOTHING = frozenset({"ddl", "dcl", "session", "transaction", "role_change"})


def _temporary(schema: str) -> bool:
    """A backend's temporary schema (pg_temp_3): sessions name it ``pg_temp``."""
    return schema.lower().startswith("pg_temp_")


def build_view_dependencies(rows: Iterable[Row]) -> Mapping[str, frozenset[str]]:
    """Rows of ``CATALOG_SQL`` → {"schema.view": {"schema.table", ...}, "view": {...}}.

    Direct dependencies only, in time linear in the rows: the engine follows them transitively
    per statement (``PhiMatcher.touched``, visiting each relation once and within a step
    budget), so a view of a view of ``patients`` still reads ``patients``, and views that refer
    to each other, or a chain of thousands, cost no more than their size. Each view is also
    listed under its bare name, merging same-named views of every schema, because the engine
    sees unqualified names and cannot know the search_path. A temporary view is also listed
    as ``pg_temp.view``, merging every backend's (the catalog cannot tell which backend is the
    session's).
    """
    mapping: dict[str, set[str]] = {}
    for view_schema, view, table_schema, table in rows:
        dependency = f"{table_schema}.{table}"
        mapping.setdefault(f"{view_schema}.{view}".lower(), set()).add(dependency)
        mapping.setdefault(view.lower(), set()).add(dependency)
        if _temporary(view_schema):
            mapping.setdefault(f"{_TEMP_SCHEMA}.{view}".lower(), set()).add(dependency)
    return {name: frozenset(deps) for name, deps in mapping.items()}


def relation_names(rows: Iterable[tuple[str, str]]) -> frozenset[str]:
    """(schema, name) of every relation → the names a statement may use for them: "schema.name"
    and bare "name" (any schema: the search_path can point anywhere), lower case, and
    ``pg_temp.name`` for temporary ones."""
    names: set[str] = set()
    for schema, name in rows:
        names.add(name.lower())
        names.add(f"{schema}.{name}".lower())
        if _temporary(schema):
            names.add(f"{_TEMP_SCHEMA}.{name}".lower())
    return frozenset(names)


def relation_homes(rows: Iterable[tuple[str, str]]) -> Mapping[str, frozenset[str]]:
    """(schema, name) of every relation → {"name": {"schema", ...}}, lower case: the schemas a
    name written without one may resolve to (``policies.marks.protected``: the search_path is
    the session's, and ``SET`` changes it)."""
    homes: dict[str, set[str]] = {}
    for schema, name in rows:
        homes.setdefault(name.lower(), set()).add(schema.lower())
    return {name: frozenset(schemas) for name, schemas in homes.items()}


class Unsettled(Mapping[str, frozenset[str]]):
    """View dependencies the gateway cannot vouch for now, and ``why``: every relation a
    statement reads counts as reading every PHI table of the database (fail closed).

    Used while DDL of the session is in flight or not yet committed (the catalog connection
    cannot see it), and while the catalog could not be read again after DDL. Otherwise it reads
    as the ``views`` it wraps. Each instance is new, so caches keyed on the identity of the
    dependencies never mix its decisions with settled ones.
    """

    __slots__ = ("views", "why")

    def __init__(self, views: Mapping[str, frozenset[str]], why: str) -> None:
        self.views = views
        self.why = why

    def __getitem__(self, key: str) -> frozenset[str]:
        return self.views[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.views)

    def __len__(self) -> int:
        return len(self.views)

    def __bool__(self) -> bool:
        return True  # even over no views: the walk must look at it

    def note(self) -> str:
        """What a decision made on it that touches PHI says, after its reason."""
        return f" ({self.why}: every relation read counts as reading every PHI table)"
