"""View and partition dependencies: the catalog query the gateway runs, and the mapping it feeds.

Reading a view (or materialized view) of ``patients`` reads ``patients``; so does reading a
partition or inheritance child of it. The gateway runs ``CATALOG_SQL`` against the upstream at
connect and after DDL, passes the rows to ``build_view_dependencies``, and hands the result to
every ``RequestContext``. This module only describes and transforms; it runs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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
SELECT cn.nspname, c.relname, pn.nspname, p.relname
  FROM pg_catalog.pg_inherits i
  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
  JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
  JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
"""

Row = tuple[str, str, str, str]


def build_view_dependencies(rows: Iterable[Row]) -> Mapping[str, frozenset[str]]:
    """Rows of ``CATALOG_SQL`` → {"schema.view": {"schema.table", ...}, "view": {...}}.

    Direct dependencies only, in time linear in the rows: the engine follows them transitively
    per statement (``PhiMatcher.touched``, visiting each relation once and within a step
    budget), so a view of a view of ``patients`` still reads ``patients``, and views that refer
    to each other, or a chain of thousands, cost no more than their size. Each view is also
    listed under its bare name, merging same-named views of every schema, because the engine
    sees unqualified names and cannot know the search_path.
    """
    mapping: dict[str, set[str]] = {}
    for view_schema, view, table_schema, table in rows:
        dependency = f"{table_schema}.{table}"
        mapping.setdefault(f"{view_schema}.{view}".lower(), set()).add(dependency)
        mapping.setdefault(view.lower(), set()).add(dependency)
    return {name: frozenset(deps) for name, deps in mapping.items()}
