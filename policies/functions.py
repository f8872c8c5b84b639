"""User-defined functions: what their bodies read, and what calls them behind the tree's back.

``SELECT leak()`` names no table, yet ``leak()``'s body may read ``patients``. The gateway runs
:data:`FUNCTIONS_SQL` with the service credential at a database's first session and whenever
the part of the catalog's fingerprint it depends on moved (``policies.fingerprint``;
``gateway.policy.function_reads``) and builds a :class:`FunctionCatalog` with
:func:`build_functions`; ``policies.calls`` follows it per statement. What it knows:

* every function outside ``pg_catalog``/``information_schema``: its kind (``prokind``: 'f'
  function, 'a' aggregate, 'w' window, 'p' procedure) and what its body reads. SQL-language
  bodies (``prosrc``, or ``prosqlbody`` for ``BEGIN ATOMIC``/``RETURN`` bodies) are parsed with
  the classifier: the relations, functions, operators and casts they use, the rows they read
  unfiltered or fold (a call is then a bulk export) and the dangerous calls they make. Any other
  language (plpgsql, plperl, C outside an extension) cannot be proved: a call is *opaque* and
  touches every PHI table of the database. C/internal functions of an extension (installed by
  a superuser) are treated as built-ins, and an aggregate reads what its support functions read;
* what else runs a user function: the dependencies ``pg_depend`` records for functions (SQL
  standard bodies, aggregate support), view rules, row-security policies (run on reads), table
  rules, triggers, column defaults, check constraints and index expressions and predicates
  (run on writes), user operators (by
  name) and casts (by target type; implicit and assignment casts run unseen, so on every
  statement);
* the enabled event triggers (user code run on DDL: ``policies.catalog_effects``);
* the names of the built-ins (``policies.readonly.BUILTINS_SQL``, read once per database:
  :func:`builtin_rows`), so a name that is in neither list is unknown (opaque).

Until the catalog is read (and from DDL until it is read again) :data:`NOTHING_KNOWN` stands:
built-ins are PostgreSQL 15's names, and every other function is opaque. Pure: runs nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pglast import parser

from policies.classify import classify, classify_node
from policies.fingerprint import FUNCTIONS_PART_SQL
from policies.pgfunctions import (
    COLLECTING_AGGREGATES,
    RANKING_WINDOWS,
    SCALAR_FUNCTIONS,
    SUMMARY_AGGREGATES,
    WINDOW_FUNCTIONS,
)
from policies.sqltree import unwrap
from policies.statement import Statement, TableRef, WriteTarget

_USER = "n.nspname NOT IN ('pg_catalog', 'information_schema')"
MAX_BODY = 262_144  # characters of a body read; a longer one fails to parse, so it is opaque
# Rows: (kind, schema, name, a, b, c), all text.
#   'f' user function: a = prokind, b = language ('extension' for an extension's C code), c = body
#   'b' built-in function name (from policies.readonly.BUILTINS_SQL, read once: builtin_rows)
#   'fingerprint': c = the functions part of the catalog's fingerprint (policies.fingerprint)
#   'd' function -> what it refers to: a = 'f' (b.c a function) or 'r' (b.c a relation)
#   'v' relation -> function run when it is read (view rules, row-security policies)
#   'w' relation -> function or relation used when it is written (rules, triggers, defaults,
#       check constraints, index expressions and predicates): a = 'f' or 'r'
#   'o' operator name (in name) -> function b.c;  'c' cast to type schema.name, a = context
#   'e' an enabled event trigger (name), a = its event
FUNCTIONS_SQL = f"""\
WITH attached(kind, classid, objid, relid) AS (
  SELECT CASE WHEN c.relkind IN ('v', 'm') THEN 'v' ELSE 'w' END,
         'pg_catalog.pg_rewrite'::regclass, r.oid, r.ev_class
    FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
  UNION ALL SELECT 'w', 'pg_catalog.pg_trigger'::regclass, t.oid, t.tgrelid
    FROM pg_catalog.pg_trigger t
  UNION ALL SELECT 'w', 'pg_catalog.pg_attrdef'::regclass, a.oid, a.adrelid
    FROM pg_catalog.pg_attrdef a
  UNION ALL SELECT 'w', 'pg_catalog.pg_constraint'::regclass, k.oid, k.conrelid
    FROM pg_catalog.pg_constraint k WHERE k.conrelid <> 0
  UNION ALL SELECT 'v', 'pg_catalog.pg_policy'::regclass, p.oid, p.polrelid
    FROM pg_catalog.pg_policy p
  UNION ALL SELECT 'w', 'pg_catalog.pg_class'::regclass, i.indexrelid, i.indrelid
    FROM pg_catalog.pg_index i WHERE i.indexprs IS NOT NULL OR i.indpred IS NOT NULL
)
SELECT 'fingerprint', '', '', '', '', {FUNCTIONS_PART_SQL}
UNION ALL
SELECT 'f', n.nspname::text, p.proname::text, p.prokind::text,
       CASE WHEN l.lanname IN ('c', 'internal') AND EXISTS (
              SELECT 1 FROM pg_catalog.pg_depend e
               WHERE e.classid = 'pg_catalog.pg_proc'::regclass AND e.objid = p.oid
                 AND e.deptype = 'e') THEN 'extension' ELSE l.lanname::text END,
       left(CASE WHEN p.prosqlbody IS NOT NULL
                 THEN pg_catalog.pg_get_function_sqlbody(p.oid) ELSE p.prosrc END, {MAX_BODY})
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_catalog.pg_language l ON l.oid = p.prolang
 WHERE {_USER}
UNION ALL
SELECT DISTINCT 'd', fn.nspname::text, f.proname::text,
       CASE WHEN d.refclassid = 'pg_catalog.pg_proc'::regclass THEN 'f' ELSE 'r' END,
       n.nspname::text, coalesce(t.proname, r.relname)::text
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_proc f ON d.classid = 'pg_catalog.pg_proc'::regclass AND f.oid = d.objid
  JOIN pg_catalog.pg_namespace fn ON fn.oid = f.pronamespace
  LEFT JOIN pg_catalog.pg_proc t
         ON d.refclassid = 'pg_catalog.pg_proc'::regclass AND t.oid = d.refobjid
  LEFT JOIN pg_catalog.pg_class r
         ON d.refclassid = 'pg_catalog.pg_class'::regclass AND r.oid = d.refobjid
  JOIN pg_catalog.pg_namespace n ON n.oid = coalesce(t.pronamespace, r.relnamespace)
 WHERE d.deptype = 'n' AND {_USER}
UNION ALL
SELECT DISTINCT a.kind, cn.nspname::text, c.relname::text,
       CASE WHEN d.refclassid = 'pg_catalog.pg_proc'::regclass THEN 'f' ELSE 'r' END,
       n.nspname::text, coalesce(t.proname, r.relname)::text
  FROM attached a
  JOIN pg_catalog.pg_depend d ON d.classid = a.classid AND d.objid = a.objid
  JOIN pg_catalog.pg_class c ON c.oid = a.relid
  JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_proc t
         ON d.refclassid = 'pg_catalog.pg_proc'::regclass AND t.oid = d.refobjid
  LEFT JOIN pg_catalog.pg_class r ON d.refclassid = 'pg_catalog.pg_class'::regclass
         AND r.oid = d.refobjid AND r.oid <> a.relid
         AND a.classid = 'pg_catalog.pg_rewrite'::regclass AND a.kind = 'w'
  JOIN pg_catalog.pg_namespace n ON n.oid = coalesce(t.pronamespace, r.relnamespace)
 WHERE {_USER}
UNION ALL
SELECT 'e', '', e.evtname::text, e.evtevent::text, '', ''
  FROM pg_catalog.pg_event_trigger e WHERE e.evtenabled <> 'D'
UNION ALL
SELECT DISTINCT 'o', '', o.oprname::text, '', n.nspname::text, p.proname::text
  FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE {_USER}
UNION ALL
SELECT DISTINCT 'c', tn.nspname::text, ty.typname::text, c.castcontext::text,
       n.nspname::text, p.proname::text
  FROM pg_catalog.pg_cast c JOIN pg_catalog.pg_type ty ON ty.oid = c.casttarget
  JOIN pg_catalog.pg_namespace tn ON tn.oid = ty.typnamespace
  JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE {_USER}
"""

Row = tuple[str, str, str, str, str, str]
CATALOG_SCHEMAS = frozenset({"pg_catalog", "information_schema"})
_SQL_PREFIX = "CREATE FUNCTION phigate_body() RETURNS void LANGUAGE sql "
# PostgreSQL 15's built-in names: what stands while the catalog is not known.
STATIC_BUILTINS = (SCALAR_FUNCTIONS | SUMMARY_AGGREGATES | COLLECTING_AGGREGATES
                   | RANKING_WINDOWS | WINDOW_FUNCTIONS)


@dataclass(frozen=True, slots=True)
class FunctionFacts:
    """One function name (every overload, of every schema when the name is bare).

    ``kinds`` are the overloads' ``prokind``s; ``relations``/``calls`` what the bodies read and
    call (user functions only); ``exports`` the relations a body reads unfiltered or folds into
    one row; ``writes`` the relations a body writes values into; ``opaque`` why some body
    cannot be proved (None: every body was read)."""

    kinds: frozenset[str]
    relations: tuple[TableRef, ...] = ()
    calls: tuple[str, ...] = ()
    exports: tuple[TableRef, ...] = ()
    dangerous: tuple[str, ...] = ()
    opaque: str | None = None
    writes: tuple[WriteTarget, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)  # compared by identity (a decision cache key)
class FunctionCatalog:
    """What one database's catalog says about user functions; names lower-case, bare and
    qualified (same-named functions of every schema merged: the search_path is unknown)."""

    known: bool
    builtins: frozenset[str]
    functions: Mapping[str, FunctionFacts] = field(default_factory=dict)
    operators: Mapping[str, frozenset[str]] = field(default_factory=dict)
    casts: Mapping[str, frozenset[str]] = field(default_factory=dict)
    implicit: frozenset[str] = frozenset()  # functions of implicit/assignment casts
    reads: Mapping[str, frozenset[str]] = field(default_factory=dict)
    writes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    write_relations: Mapping[str, tuple[TableRef, ...]] = field(default_factory=dict)
    event_triggers: tuple[str, ...] = ()  # enabled ones: user code run on DDL

    def is_builtin(self, name: str) -> bool:
        schema, _, bare = name.rpartition(".")
        if schema:
            return schema.rpartition(".")[2] in CATALOG_SCHEMAS
        return bare in self.builtins

    def kinds(self, name: str) -> frozenset[str] | None:
        """The kinds of the user function ``name``; None when it is not one."""
        facts = self.functions.get(name.lower())
        return facts.kinds if facts is not None else None


NOTHING_KNOWN = FunctionCatalog(known=False, builtins=STATIC_BUILTINS)


def builtin_rows(rows: Iterable[tuple[str, str, str, str]]) -> list[Row]:
    """The built-ins' rows of ``policies.readonly.BUILTINS_SQL`` as :data:`FUNCTIONS_SQL`'s
    'b' rows (one per name)."""
    return list(dict.fromkeys(("b", schema, name, "", "", "")
                              for kind, schema, name, _ in rows if kind == "f"))


def build_functions(rows: Iterable[Row]) -> FunctionCatalog:
    """Rows of :data:`FUNCTIONS_SQL` → a :class:`FunctionCatalog`."""
    facts: dict[str, list[FunctionFacts]] = {}
    refs: dict[str, tuple[set[str], set[TableRef]]] = {}
    builtins: set[str] = set()
    operators: dict[str, set[str]] = {}
    casts: dict[str, set[str]] = {}
    implicit: set[str] = set()
    reads: dict[str, set[str]] = {}
    writes: dict[str, tuple[set[str], set[TableRef]]] = {}
    event_triggers: list[str] = []
    for kind, schema, name, a, b, c in rows:
        names = _names(schema, name)
        if kind == "f":
            body = function_body(a, b, c)
            for key in names:
                facts.setdefault(key, []).append(body)
        elif kind == "b":
            builtins.add(name.lower())
        elif kind == "e":
            event_triggers.append(name)
        elif kind == "o":
            operators.setdefault(name.lower(), set()).add(f"{b}.{c}".lower())
        elif kind == "c":
            for key in names:
                casts.setdefault(key, set()).add(f"{b}.{c}".lower())
            if a in ("i", "a"):
                implicit.add(f"{b}.{c}".lower())
        elif kind == "v" and a == "f":
            for key in names:
                reads.setdefault(key, set()).add(f"{b}.{c}".lower())
        elif kind in ("d", "w"):
            target = refs if kind == "d" else writes
            for key in names:
                calls, relations = target.setdefault(key, (set(), set()))
                if a == "f":
                    calls.add(f"{b}.{c}".lower())
                else:
                    relations.add(TableRef(c.lower(), b.lower()))
    return FunctionCatalog(
        known=True,
        builtins=frozenset(builtins) or STATIC_BUILTINS,
        functions={key: _merge(found, refs.get(key)) for key, found in facts.items()},
        operators={k: frozenset(v) for k, v in operators.items()},
        casts={k: frozenset(v) for k, v in casts.items()},
        implicit=frozenset(implicit),
        reads={k: frozenset(v) for k, v in reads.items()},
        writes={k: frozenset(v[0]) for k, v in writes.items()},
        write_relations={k: tuple(v[1]) for k, v in writes.items() if v[1]},
        event_triggers=tuple(event_triggers),
    )


def _names(schema: str, name: str) -> tuple[str, str]:
    return f"{schema}.{name}".lower(), name.lower()


def _merge(found: list[FunctionFacts], depends: tuple[set[str], set[TableRef]] | None
           ) -> FunctionFacts:
    calls, relations = depends if depends is not None else (set(), set())
    opaque = next((f.opaque for f in found if f.opaque is not None), None)
    return FunctionFacts(
        kinds=frozenset(k for f in found for k in f.kinds),
        relations=tuple(dict.fromkeys([r for f in found for r in f.relations] + sorted(
            relations, key=str))),
        calls=tuple(dict.fromkeys([c for f in found for c in f.calls] + sorted(calls))),
        exports=tuple(dict.fromkeys(r for f in found for r in f.exports)),
        dangerous=tuple(dict.fromkeys(d for f in found for d in f.dangerous)),
        opaque=opaque,
        writes=tuple(dict.fromkeys(w for f in found for w in f.writes)),
    )


def function_body(kind: str, language: str, body: str | None) -> FunctionFacts:
    """What one function's body reads, from its kind, language and source text."""
    kinds = frozenset({kind})
    if kind == "a" or language in ("extension", "internal"):
        return FunctionFacts(kinds)  # an aggregate reads what its support functions read
    if language != "sql":
        return FunctionFacts(kinds, opaque=f"language {language}")
    statements = _sql_statements(body or "")
    if statements is None:
        return FunctionFacts(kinds, opaque="a SQL body the parser does not read")
    relations: dict[TableRef, None] = {}
    calls: dict[str, None] = {}
    exports: dict[TableRef, None] = {}
    dangerous: dict[str, None] = {}
    writes: dict[WriteTarget, None] = {}
    for stmt in statements:
        if stmt.system_reads or stmt.command == "DO":
            return FunctionFacts(kinds, opaque="a body that reads statistics or activity")
        relations.update(dict.fromkeys(stmt.tables))
        calls.update(dict.fromkeys(stmt.functions))
        calls.update(dict.fromkeys(f"operator {o}" for o in stmt.operators))
        calls.update(dict.fromkeys(f"cast {t}" for t in stmt.casts))
        exports.update(dict.fromkeys(_bulk(stmt)))
        # DDL that renames or moves a relation: as if it read what it relabels in bulk
        exports.update(dict.fromkeys(TableRef("*") if r.via == "rename database" else r.old
                                     for r in stmt.relabels))
        dangerous.update(dict.fromkeys(stmt.dangerous))
        writes.update(dict.fromkeys(stmt.writes))
    return FunctionFacts(kinds, tuple(relations), tuple(calls), tuple(exports),
                         tuple(dangerous), writes=tuple(writes))


def _bulk(stmt: Statement) -> list[TableRef]:
    """Relations a body statement hands back unfiltered or folded, without any LIMIT."""
    out = [flow.table for flow in stmt.exports if flow.limit is None]
    for collapse in stmt.collapses:
        out += [t for source in collapse.inputs if source.limit is None for t in source.tables]
    if stmt.copy_to:
        out += list(stmt.tables)
    return out


def _sql_statements(body: str) -> tuple[Statement, ...] | None:
    """The statements of a SQL body: a string body, or a ``BEGIN ATOMIC``/``RETURN`` one."""
    text = body.strip()
    head = text[:12].upper()
    if not (head.startswith("BEGIN ATOMIC") or head.startswith("RETURN")):
        classification = classify(text)
        return classification.statements if classification.ok else None
    try:
        tree = json.loads(parser.parse_sql_json(_SQL_PREFIX + text))
        _, create = unwrap(tree["stmts"][0]["stmt"])
    except (parser.ParseError, KeyError, IndexError, ValueError, RecursionError):
        return None
    kind, node = unwrap(create.get("sql_body"))
    if kind == "ReturnStmt":
        select = {"SelectStmt": {"targetList": [{"ResTarget": {"val": node.get("returnval")}}]}}
        return (classify_node(select, text),)
    items = node.get("items") or [] if kind == "List" else []
    inner = unwrap(items[0])[1].get("items", []) if items else []
    try:
        return tuple(classify_node(item, text) for item in inner)
    except RecursionError:
        return None
