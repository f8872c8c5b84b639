"""What a statement reaches through user functions: their bodies, transitively.

``reach(catalog, stmt, views, steps)`` starts from the functions, operators and casts the
statement names, the functions implicit casts run everywhere, the functions reading its
relations runs (view rules and row-security policies, through views of views), and — when it
writes — the triggers, defaults, check constraints and rules of the tables it names. It follows
every function's body (each name once, one step each, so recursion and cycles end) and returns
the relations the bodies read, the relations they hand back in bulk, the relations they write
values into, the dangerous calls they make, and the opaque functions (plpgsql, unknown names,
``DO``) — which touch every PHI table. ``policies.evaluate`` turns that into PHI tables and
bulk exports. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from policies.functions import FunctionCatalog
from policies.model import StatementClass as C
from policies.phi import parse_ref
from policies.statement import Collapse, Statement, TableRef, WriteTarget
from policies.steps import Steps

_WRITES = frozenset({C.INSERT, C.UPDATE, C.DELETE, C.MERGE, C.COPY_IN})


@dataclass(slots=True)
class Reach:
    """What the user functions a statement runs read (see the module docstring)."""

    relations: dict[TableRef, None] = field(default_factory=dict)
    exports: dict[TableRef, str] = field(default_factory=dict)  # relation -> function name
    dangerous: dict[str, None] = field(default_factory=dict)
    opaque: dict[str, None] = field(default_factory=dict)  # "function leak (language plpgsql)"
    readers: dict[str, None] = field(default_factory=dict)  # functions whose bodies read
    writes: dict[WriteTarget, str] = field(default_factory=dict)  # target -> "function f"

    def __bool__(self) -> bool:
        return bool(self.relations or self.opaque or self.dangerous)


def reach(catalog: FunctionCatalog, stmt: Statement, views: Mapping[str, Collection[str]],
          steps: Steps) -> Reach:
    """Follow every user function ``stmt`` can run (see the module docstring)."""
    out = Reach()
    if stmt.command == "DO":
        out.opaque["a DO block (anonymous code)"] = None
    todo = [name for name in stmt.functions if not _plain_builtin(catalog, name)]
    todo += [f for op in stmt.operators for f in catalog.operators.get(op, ())]
    todo += [f for t in stmt.casts for f in _cast(catalog, t)]
    todo += catalog.implicit
    if catalog.reads or catalog.writes:
        writes = not _WRITES.isdisjoint(stmt.classes) or stmt.command == "TRUNCATE"
        todo += _attached(catalog, stmt.tables, views, writes, out, steps)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        steps.take()
        todo += _visit(catalog, name, out)
    return out


def _plain_builtin(catalog: FunctionCatalog, name: str) -> bool:
    """A built-in no user function shares the name of (then it may be the user's)."""
    return catalog.is_builtin(name) and name not in catalog.functions


def _cast(catalog: FunctionCatalog, type_name: str) -> frozenset[str]:
    return catalog.casts.get(type_name) or catalog.casts.get(type_name.rpartition(".")[2], 
                                                             frozenset())


def _visit(catalog: FunctionCatalog, name: str, out: Reach) -> list[str]:
    """One function name: record what its bodies read; return what they call."""
    if name.startswith("operator "):
        return list(catalog.operators.get(name.removeprefix("operator "), ()))
    if name.startswith("cast "):
        return list(_cast(catalog, name.removeprefix("cast ")))
    facts = catalog.functions.get(name)
    if facts is None:
        if not catalog.is_builtin(name):
            why = "not in the catalog" if catalog.known else "catalog not read yet"
            out.opaque[f"function {name} ({why})"] = None
        return []
    if facts.opaque is not None:
        out.opaque[f"function {name} ({facts.opaque})"] = None
    if facts.relations:
        out.readers[name] = None
        out.relations.update(dict.fromkeys(facts.relations))
    for relation in facts.exports:
        out.exports.setdefault(relation, name)
    for target in facts.writes:
        out.writes.setdefault(target, f"function {name}")
    out.dangerous.update(dict.fromkeys(f"{d} (in function {name})" for d in facts.dangerous))
    return [c for c in facts.calls if not _plain_builtin(catalog, c)]


def _attached(catalog: FunctionCatalog, tables: tuple[TableRef, ...],
              views: Mapping[str, Collection[str]], writes: bool, out: Reach,
              steps: Steps) -> list[str]:
    """Functions reading (and, for a write, writing) the statement's relations runs,
    through views, each relation once."""
    found: list[str] = []
    seen: set[str] = set()
    stack = [_key(t) for t in tables]
    direct = set(stack)
    while stack:
        key = stack.pop()
        if key in seen:
            continue
        seen.add(key)
        steps.take()
        found += catalog.reads.get(key, ())
        if writes and key in direct:  # triggers and defaults of the tables written
            found += catalog.writes.get(key, ())
            ruled = catalog.write_relations.get(key, ())
            out.relations.update(dict.fromkeys(ruled))
            for relation in ruled:  # a rule may write the new rows there (DO ALSO INSERT)
                out.writes.setdefault(WriteTarget(relation, "insert"), f"rule of {key}")
        dependencies = views.get(key, ())
        steps.take(len(dependencies))
        stack += [_key(parse_ref(d)) for d in dependencies]
    return found


def _key(ref: TableRef) -> str:
    return (f"{ref.schema}.{ref.name}" if ref.schema else ref.name).lower()


def scalar_user_function(catalog: FunctionCatalog | None, collapse: Collapse) -> bool:
    """A collapse that is only an unknown-name call of a user function that is no aggregate
    (``prokind`` 'f' or 'p'): it returns one value per row, so it folds nothing."""
    if catalog is None or collapse.function is None:
        return False
    kinds = catalog.kinds(collapse.function)
    return kinds is not None and not kinds & {"a", "w"}
