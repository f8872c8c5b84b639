"""The catalog fingerprint: one part per catalog read, so a change re-reads only what it moved.

The gateway reads a database's catalog in four reads: the relations and views
(``policies.views.SNAPSHOT_SQL``), the built-in functions (``policies.readonly.BUILTINS_SQL``,
about 3,300 rows of ``pg_proc``), the user functions and what runs them
(``policies.functions.FUNCTIONS_SQL``) and the volatility (``policies.readonly.VOLATILITY_SQL``).
:data:`FINGERPRINT_SQL` is one text of three parts, each changing whenever anything one of the
reads uses is made, dropped, renamed or replaced:

* ``relations`` (the snapshot): every schema, rule and inheritance row, and the name, schema,
  kind, row security and column names of every relation a statement can read;
* ``functions`` (the user functions; with the other two, the volatility): every user
  function, language, schema, rule, trigger, default, check constraint, row-security policy,
  operator, cast, aggregate and event trigger; the dependencies of those objects and every
  dependency on a user function (an index expression's too); the names of the relations
  those refer to or are attached to; the names of cast targets and the I/O functions of base
  types;
* ``builtins``: the functions of ``pg_catalog`` and ``information_schema`` (only a superuser
  changes them).

Rows are counted with their ``xmin`` summed (a written row has a newer one, a dropped one
leaves the count), or where only some columns matter (``TRUNCATE`` rewrites a relation's
``pg_class`` row, ``CREATE INDEX`` adds one of another kind) by a digest of those columns.
So ``TRUNCATE``, ``CREATE INDEX`` on columns, ``ANALYZE`` and ``COMMENT`` move no part, and a
new table moves ``relations`` alone until something calls a user function on it. Pure text.
"""

from __future__ import annotations

from dataclasses import dataclass

CATALOG_NAMESPACES = ("(SELECT oid FROM pg_catalog.pg_namespace"
                      " WHERE nspname IN ('pg_catalog', 'information_schema'))")
USER_FUNCTIONS = ("(SELECT oid FROM pg_catalog.pg_proc"
                  f" WHERE pronamespace NOT IN {CATALOG_NAMESPACES})")
# Objects whose expressions may call user functions (or, a rule, name relations).
_ATTACHED = ", ".join(f"'pg_catalog.{c}'::pg_catalog.regclass" for c in (
    "pg_proc", "pg_rewrite", "pg_trigger", "pg_attrdef", "pg_constraint", "pg_policy",
    "pg_operator", "pg_cast"))


def _rows(catalog: str, where: str = "") -> str:
    where = f" {where}" if where else ""
    return (f"(SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0)"
            f" FROM pg_catalog.{catalog}{where})")


def _digest(catalog: str, columns: str, where: str) -> str:
    return (f"(SELECT md5(coalesce(string_agg(concat_ws(',', {columns}), ';' ORDER BY oid), ''))"
            f" FROM pg_catalog.{catalog} WHERE {where})")


_RELKINDS = "('r', 'p', 'v', 'm', 'f', 'S')"
# The columns of those relations by name (masking maps result columns by name): an index's
# own pg_attribute rows are not among them.
_COLUMNS = ("(SELECT md5(coalesce(string_agg(concat_ws(',', a.attrelid, a.attnum,"
            " quote_ident(a.attname), a.attisdropped), ';' ORDER BY a.attrelid, a.attnum), ''))"
            " FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
            f" WHERE a.attnum > 0 AND c.relkind IN {_RELKINDS})")
RELATIONS = (
    _rows("pg_namespace"), _rows("pg_rewrite"), _rows("pg_inherits"),
    _digest("pg_class", "oid, quote_ident(relname), relnamespace, relkind, relrowsecurity",
            f"relkind IN {_RELKINDS}"),
    _COLUMNS,
)
FUNCTIONS = (
    _rows("pg_proc", f"WHERE pronamespace NOT IN {CATALOG_NAMESPACES}"),
    *(_rows(c) for c in ("pg_namespace", "pg_language", "pg_rewrite", "pg_trigger",
                         "pg_attrdef", "pg_constraint", "pg_policy", "pg_operator", "pg_cast",
                         "pg_aggregate", "pg_event_trigger")),
    _rows("pg_depend", f"WHERE classid IN ({_ATTACHED}) OR (refclassid = 'pg_catalog."
                       f"pg_proc'::pg_catalog.regclass AND refobjid IN {USER_FUNCTIONS})"),
    _digest("pg_class", "oid, quote_ident(relname), relnamespace, relkind",
            "oid IN (SELECT refobjid FROM pg_catalog.pg_depend WHERE refclassid = "
            f"'pg_catalog.pg_class'::pg_catalog.regclass AND classid IN ({_ATTACHED})) "
            "OR oid IN (SELECT indrelid FROM pg_catalog.pg_index"
            " WHERE indexprs IS NOT NULL OR indpred IS NOT NULL)"),
    _digest("pg_type", "oid, quote_ident(typname), typnamespace",
            "oid IN (SELECT casttarget FROM pg_catalog.pg_cast)"),
    _digest("pg_type", "oid, typinput, typoutput, typreceive, typsend",
            "typtype IN ('b', 'p') AND typinput <> 'pg_catalog.array_in'::pg_catalog.regproc"),
)
BUILTINS = (_rows("pg_proc", f"WHERE pronamespace IN {CATALOG_NAMESPACES}"),)
SEPARATOR = " | "


def part_sql(parts: tuple[str, ...]) -> str:
    """One SQL expression: the text of one part."""
    return "concat_ws(' ', " + ", ".join(parts) + ")"


RELATIONS_SQL, FUNCTIONS_PART_SQL, BUILTINS_PART_SQL = (
    part_sql(p) for p in (RELATIONS, FUNCTIONS, BUILTINS))
# The whole fingerprint, as one SQL expression and as a query (what the poll runs).
FINGERPRINT_EXPRESSION = (f"concat_ws('{SEPARATOR}', {RELATIONS_SQL}, {FUNCTIONS_PART_SQL},"
                          f" {BUILTINS_PART_SQL})")
FINGERPRINT_SQL = f"SELECT {FINGERPRINT_EXPRESSION}"


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The three parts of one :data:`FINGERPRINT_SQL` text."""

    relations: str
    functions: str
    builtins: str

    @classmethod
    def parse(cls, text: str) -> Fingerprint:
        """A text that is not three parts compares as all three (every read follows it)."""
        parts = text.split(SEPARATOR)
        if len(parts) != 3:
            return cls(text, text, text)
        return cls(*parts)

    @property
    def user_functions(self) -> str:
        """What the user functions' read depends on (it takes the built-ins' names too)."""
        return f"{self.functions}{SEPARATOR}{self.builtins}"

    @property
    def text(self) -> str:
        """What the volatility depends on: everything."""
        return SEPARATOR.join((self.relations, self.functions, self.builtins))
