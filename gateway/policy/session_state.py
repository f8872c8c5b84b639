"""What the policy hook keeps per session: its reason, cursors, caches, and its catalog's state.

A session decides on its database's shared :class:`~gateway.policy.database_catalog.
DatabaseCatalog` — except while that catalog cannot know what the session's relations mean:
while DDL (or ``DO``, ``CALL``) the session sent is in flight, and after it completed until
the session's transaction has ended (a connection of its own cannot see uncommitted DDL).
Then ``views`` is :class:`~policies.views.Unsettled` and every relation read counts as
reading every PHI table, and ``volatility`` is :data:`~gateway.policy.catalog.NOTHING_VOUCHED`
(nothing proved read-only, every user function opaque). Other sessions keep deciding on the
shared, committed catalog. Caches of decisions and proofs are compared with ``views`` and
``volatility`` by identity, so nothing decided on other catalog facts is reused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from policies.model import Decision
from policies.readonly import Volatility
from policies.statement import Classification
from policies.views import Unsettled

from ..proxy.hooks import SessionInfo
from .catalog import NOTHING_VOUCHED, Dependencies, VolatilityRef
from .database_catalog import DatabaseCatalog
from .reuse import Reuse

Decided = tuple[Decision, dict[str, object]]  # a decision and its journal fields

IN_FLIGHT = "DDL of this session not yet completed"
UNCOMMITTED = "DDL of this transaction not yet committed"
# A name the catalog does not list even after a lookup, named while the session's transaction
# (or pipeline) may already have made it unseen (e.g. by a function that runs DDL).
NOT_LISTED = "a relation the catalog does not list, named inside a transaction"


@dataclass(slots=True)
class SessionState:
    info: SessionInfo
    reason: str | None
    catalog: DatabaseCatalog
    cursor_limits: dict[str, int] = field(default_factory=dict)
    cursor_rows: dict[str, int] = field(default_factory=dict)
    cursor_byte_limits: dict[str, int] = field(default_factory=dict)
    cursor_bytes: dict[str, int] = field(default_factory=dict)
    widths: Mapping[str, int] = field(default_factory=dict)  # row widths, policies.sizes
    # Statements forwarded and not yet complete that were not proved read-only: while any
    # is in flight (e.g. DDL in a pipeline), nothing is proved read-only (it may change
    # what a later statement's functions do).
    unproven_in_flight: int = 0
    # Statements that may change the catalog (DDL, DO, CALL) forwarded and not yet complete,
    # and whether one completed in a transaction not seen ended yet.
    changes_in_flight: int = 0
    uncommitted: bool = False
    unsettled: Unsettled | None = None  # what ``views`` is while either of the above holds
    # Parse'd statement name -> (text, decision, when, names.version if it names a statement
    # or cursor, the views it was decided on): reused by its Execute only while all hold.
    parsed: dict[str, tuple[str, Decided, float, int | None, Dependencies]] = field(
        default_factory=dict)
    decisions: dict[int, tuple[Classification, tuple[object, ...], Decided]] = field(
        default_factory=dict)
    # Decisions that leave nothing to work out per statement (no row or byte limit, no
    # cursor, no reason setting): the decision → whether it was proved read-only, with the
    # catalog facts the proof used (it is redone when either is replaced).
    plain: dict[int, tuple[Decided, Volatility, Dependencies, bool]] = field(
        default_factory=dict)
    # The fast path (gateway/policy/reuse.py): plain decisions by text and by classification.
    reuse: dict[str, Reuse] = field(default_factory=dict)
    shapes: dict[int, Reuse] = field(default_factory=dict)

    @property
    def views(self) -> Dependencies:
        """The view dependencies to decide on now."""
        unsettled = self.unsettled
        if unsettled is None:
            return self.catalog.views
        if unsettled.views is not self.catalog.views:  # read again meanwhile
            unsettled = self.unsettled = Unsettled(self.catalog.views, unsettled.why)
        return unsettled

    @property
    def volatility(self) -> VolatilityRef:
        """The volatility and functions to decide on now: none while ``views`` is unsettled
        by the session's own DDL (it may have replaced a function)."""
        if self.unsettled is not None:
            return NOTHING_VOUCHED
        return self.catalog.volatility

    def change_forwarded(self) -> None:
        """A statement that may change the catalog goes upstream."""
        self.changes_in_flight += 1
        if self.unsettled is None or self.unsettled.why != UNCOMMITTED:
            self.unsettled = Unsettled(self.catalog.views, IN_FLIGHT)

    def change_completed(self, ran: bool) -> None:
        """It completed (``ran``: it reached the database, whatever it answered)."""
        self.changes_in_flight = max(0, self.changes_in_flight - 1)
        if ran:
            self.uncommitted = True
            self.unsettled = Unsettled(self.catalog.views, UNCOMMITTED)
        elif not self.uncommitted and not self.changes_in_flight:
            self.unsettled = None

    def transaction_ended(self) -> None:
        """ReadyForQuery 'I': what completed is committed (or rolled back)."""
        self.uncommitted = False
        if self.changes_in_flight:
            self.unsettled = Unsettled(self.catalog.views, IN_FLIGHT)
        else:
            self.unsettled = None
