"""Whether rows stay PHI under the names they end up with: DDL that would strip the mark.

The policy knows PHI by name (``policies.phi``), so rows are PHI as long as every name they
can be read by is one. A rename, a move to another schema, a schema's or database's rename,
or cutting a child from its PHI parent (``policies.renames``) would leave them under a name
that reads as no PHI; ``policies.evaluate`` makes such DDL a bulk export of the PHI tables it
strips, and counts them as touched (so a ``phi: deny`` rule refuses it too). A new name that
a pattern still matches keeps the mark: rename freely within ``lab_*``.
"""

from __future__ import annotations

from policies.context import RequestContext
from policies.phi import PhiMatcher
from policies.statement import Relabel, Statement
from policies.steps import Steps

_CUTS = frozenset({"no inherit", "detach partition"})
# How the words of each relabel's denial begin (``_words``), for the denial's hint.
RELABELS = ("rename of", "set schema of", "no inherit of", "detach partition of")


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
