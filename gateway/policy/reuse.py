"""The policy hook's fast path: a repeated statement decided with one dictionary lookup.

A session that sends the same text again (an extended-protocol Parse and Execute of the
same statement, a simple query repeated), or a text whose classification is shared with an
earlier one (``policies.cache``: texts that differ only in compared numbers), gets the
earlier decision and read-only proof back without classifying, deciding or proving again —
if the decision leaves nothing to work out per statement and nothing it was made on has
moved since. :class:`Reuse` holds the decision with what it was made on; the policy hook
(``gateway/policy/hook.py``) makes one after a slow decision and checks it with
:func:`reusable`.

Only *plain* allowed decisions are reused: no row or byte limit, no PHI table (the hourly
budget moves), no cursor or named statement (the session's table of names moves), no
reason setting, no access grant (grants are revocable at any moment), and text read with
standard strings (the cache key is the text alone). Everything else a decision depends on
is compared, by identity where it is replaced rather than edited: the loaded policies (a
reload bumps the hook's generation), the wall-clock minute (time windows), the session's
reason, its view dependencies, and its database's volatility and function catalogs (DDL
replaces them). Identity, groups, client address and database are the session's own, and
each session has its own entries.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.functions import FunctionCatalog
from policies.model import Decision
from policies.readonly import Volatility
from policies.statement import Classification

from .catalog import Dependencies, VolatilityRef

MAX_REUSE = 1024  # entries per session and table; both are cleared when one is full
_Decided = tuple[Decision, dict[str, object]]


@dataclass(slots=True, frozen=True)
class Reuse:
    """A plain allowed decision and what it was made on."""

    classification: Classification
    decided: _Decided
    read_only: bool  # policies.readonly.changes_nothing, with ``current`` and ``views``
    expires: float  # Clock.seconds() at the end of the minute it was made in
    generation: int  # the policy hook's, bumped by every policy reload
    reason: str | None
    views: Dependencies
    current: Volatility
    functions: FunctionCatalog


def made_on(classification: Classification, decided: _Decided, read_only: bool, *,
            seconds: float, generation: int, reason: str | None, views: Dependencies,
            volatility: VolatilityRef) -> Reuse:
    return Reuse(classification, decided, read_only, (seconds // 60 + 1) * 60, generation,
                 reason, views, volatility.current, volatility.functions)


def reusable(reuse: Reuse, *, seconds: float, generation: int, reason: str | None,
             views: Dependencies, volatility: VolatilityRef) -> bool:
    """Nothing the decision was made on has moved."""
    return (seconds < reuse.expires and reuse.generation == generation
            and reuse.reason == reason and reuse.views is views
            and reuse.current is volatility.current
            and reuse.functions is volatility.functions)


def remember(texts: dict[str, Reuse], shapes: dict[int, Reuse], text: str,
             reuse: Reuse) -> None:
    """Keep ``reuse`` for ``text`` and for every text that shares its classification."""
    if len(texts) >= MAX_REUSE or len(shapes) >= MAX_REUSE:
        texts.clear()
        shapes.clear()
    texts[text] = reuse
    shapes[id(reuse.classification)] = reuse
