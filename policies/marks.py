"""Whether rows stay PHI under the names they end up with: write targets, and DDL that would
strip the mark.

The policy knows PHI by name (``policies.phi``), so rows are PHI as long as every name they
can be read by is one. A copy of PHI is no export only into a relation whose reads are PHI
reads whatever its name resolves to (:func:`protected`). A rename, a move to another schema,
a schema's or database's rename, or cutting a child from its PHI parent (``policies.renames``)
would leave them under a name that reads as no PHI; ``policies.evaluate`` makes such DDL a
bulk export of the PHI tables it strips, and counts them as touched (so a ``phi: deny`` rule
refuses it too). A new name that a pattern still matches keeps the mark: rename freely within
``lab_*``.
"""

from __future__ import annotations

from policies.context import RequestContext
from policies.phi import PhiMatcher, parse_ref, view_dependencies_of
from policies.statement import Relabel, Statement, TableRef, WriteTarget
from policies.steps import Steps
from policies.views import Unsettled

_CUTS = frozenset({"no inherit", "detach partition"})
# How the words of each relabel's denial begin (``_words``), for the denial's hint.
RELABELS = ("rename of", "set schema of", "no inherit of", "detach partition of")
_CREATES = frozenset({"create table as", "select into"})  # new relations, not existing ones


def stripped(matcher: PhiMatcher, ctx: RequestContext, stmt: Statement,
             steps: Steps) -> dict[str, list[str]]:
    """What each relabel of ``stmt`` says (its denial's words) → the PHI it strips."""
    out: dict[str, list[str]] = {}
    for relabel in stmt.relabels:
        names = _lost(matcher, ctx, relabel, steps)
        if names:
            out[_words(relabel)] = names
    return out


def _lost(matcher: PhiMatcher, ctx: RequestContext, relabel: Relabel,
          steps: Steps) -> list[str]:
    old, new, database = relabel.old, relabel.new, ctx.database
    if relabel.via in _CUTS:  # the child keeps what it holds, but no longer its parent's name
        if matcher.is_phi(database, old):
            return []
        return matcher.touched(database, (new, old), ctx.view_dependencies, steps)
    if relabel.via == "rename database":
        return [p.text for p in matcher.patterns
                if p.database.match((old.catalog or "").lower())
                and not p.database.match((new.catalog or "").lower())]
    if relabel.via == "rename schema":
        return [p.text for p in matcher.patterns if p.database.match(database.lower())
                and p.schema.match((old.schema or "").lower())
                and not p.schema.match((new.schema or "").lower())]
    if matcher.is_phi(database, old) and not matcher.is_phi(database, new):
        return [str(old)]
    return []


def _words(relabel: Relabel) -> str:
    old, new = relabel.old, relabel.new
    if relabel.via in _CUTS:
        return f"{relabel.via} of {old} from {new}, which leaves it no PHI table"
    if relabel.via == "rename database":
        return (f"rename of database {old.catalog} to {new.catalog}, under which its PHI "
                "tables would read as none")
    if relabel.via == "rename schema":
        return (f"rename of schema {old.schema} to {new.schema}, under which its PHI tables "
                "would read as none")
    return f"{relabel.via} of {old} to {new}, which is not a PHI table name"


def protected(matcher: PhiMatcher, ctx: RequestContext, target: WriteTarget,
              steps: Steps) -> bool:
    """Whether reads of where ``target``'s values land count as PHI reads, whatever relation
    its name resolves to: then a copy into it is no export.

    A name without schema may mean the same-named relation of any schema of the session's
    ``search_path`` (``pg_temp`` first), and the search_path may change by ``SET``: so each
    relation of that name the catalog lists must hold PHI (``ctx.relation_homes``); a temporary
    table named like a PHI table is one, as for reads. A relation made by ``CREATE TABLE AS``
    or ``SELECT INTO`` goes into the search_path's first schema, and while the catalog cannot
    vouch (DDL of this transaction) any schema may hold the name: then only a pattern that
    matches the name in every schema protects it. A view's values land in its base tables, so
    a view named like a PHI table over tables that are none is no PHI target."""
    ref, views = target.table, ctx.view_dependencies
    settled = not isinstance(views, Unsettled)
    if ref.schema is None and (target.via in _CREATES or not settled):
        return matcher.in_every_schema(ctx.database, ref)
    if not settled:
        return matcher.is_phi(ctx.database, ref)
    homes = ctx.relation_homes.get(ref.name.lower()) if ref.schema is None else None
    candidates = [TableRef(ref.name, home, ref.catalog) for home in sorted(homes)] \
        if homes else [ref]
    return all(_lands_in_phi(matcher, ctx, c, steps)
               and matcher.touched(ctx.database, (c,), views, steps) for c in candidates)


def _lands_in_phi(matcher: PhiMatcher, ctx: RequestContext, ref: TableRef,
                  steps: Steps) -> bool:
    """Whether what is written into ``ref`` ends in PHI tables: following the catalog's
    dependencies (a view: its bases; a child: its parents, which read it back), every relation
    without any must be PHI by its own name. Each relation once (cycles end); iterative, so a
    long chain of views costs steps, not stack."""
    seen: set[TableRef] = set()
    stack = [ref]
    while stack:
        relation = stack.pop()
        if relation in seen:
            continue
        seen.add(relation)
        steps.take()
        dependencies = view_dependencies_of(ctx.view_dependencies, relation)
        if not dependencies and not matcher.is_phi(ctx.database, relation):
            return False
        steps.take(len(dependencies))
        stack += [parse_ref(d) for d in dependencies]
    return True
