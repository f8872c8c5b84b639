"""The policy model: statement classes, rules, policies and the decisions they produce.

Everything here is a frozen value. ``policies.loader`` builds ``Policy`` objects from YAML text,
``policies.engine`` reads them and returns ``Decision`` objects; the gateway journals decisions and
turns a denial into an ErrorResponse with ``Decision.sqlstate``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from policies.approval import Approval
    from policies.masking import ColumnPattern, MaskingRule
    from policies.statement import Statement


class StatementClass(StrEnum):
    """What a statement does, as rules name it in ``allow:`` and ``deny:``."""

    SELECT = "select"
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    MERGE = "merge"
    COPY_IN = "copy_in"
    COPY_OUT = "copy_out"
    DDL = "ddl"
    DCL = "dcl"  # GRANT/REVOKE, roles, row-security policies
    ROLE_CHANGE = "role_change"  # SET ROLE, SET SESSION AUTHORIZATION, RESET ROLE, DISCARD ALL
    TRANSACTION = "transaction"
    SESSION = "session"  # SET/SHOW/RESET/DISCARD of ordinary settings, CLOSE, DEALLOCATE, LISTEN
    UTILITY = "utility"  # EXPLAIN without ANALYZE, VACUUM, ANALYZE, LOCK, CHECKPOINT, ...
    CALL = "call"


CLASSES: frozenset[str] = frozenset(c.value for c in StatementClass)
ALL = "all"  # every class above; never includes DANGEROUS
DANGEROUS = "dangerous"  # a flag on a statement, allowed only when a rule names it
BULK_EXPORT = "bulk_export"  # a built-in condition; can only be denied
ALLOW_ITEMS: frozenset[str] = CLASSES | {ALL, DANGEROUS}
DENY_ITEMS: frozenset[str] = CLASSES | {ALL, DANGEROUS, BULK_EXPORT}

# Names of the built-in "rules" a decision can cite when no rule of a policy file decided.
DEFAULT_DENY = "default-deny"  # no rule allows the statement
UNPARSEABLE = "unparseable"  # the parser rejected the text
DANGEROUS_RULE = "dangerous"  # dangerous statement and no rule allows `dangerous`
UNKNOWN_NAME = "unknown-name"  # EXECUTE/FETCH of a statement or cursor the gateway never saw
GATEWAY_SETTING = "gateway-setting"  # SET phigate.reason: consumed by the gateway, never forwarded
EMPTY_QUERY = "empty-query"  # nothing but whitespace and comments
ENGINE_ERROR = "engine-error"  # the engine failed: fail closed
TOO_COMPLEX = "too-complex"  # deciding would take more steps than the budget allows

SQLSTATE_DENIED = "42501"  # insufficient_privilege
SQLSTATE_ROW_LIMIT = "54000"  # program_limit_exceeded, for a max_rows or max_bytes cut
SQLSTATE_TOO_COMPLEX = "54001"  # statement_too_complex: the decision's step budget ran out

Action = Literal["allow", "deny"]
PhiAccess = Literal["allow", "deny", "masked"]

DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Minutes of the day, start inclusive, end exclusive; wraps midnight when end <= start."""

    start: int
    end: int
    text: str

    def contains(self, minute_of_day: int) -> bool:
        if self.start < self.end:
            return self.start <= minute_of_day < self.end
        return minute_of_day >= self.start or minute_of_day < self.end


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a policy file. ``None`` for a condition means "any"."""

    name: str
    source: str  # "file:line", for messages and the journal
    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()
    users: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    databases: frozenset[str] | None = None
    clients: tuple[Network, ...] | None = None
    hours: TimeWindow | None = None
    days: frozenset[int] | None = None  # 0 = Monday, as datetime.weekday()
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    require_reason: bool = False
    phi: PhiAccess = "allow"
    max_rows: int | None = None
    max_phi_rows_per_hour: int | None = None
    max_bytes: int | None = None  # DataRow/CopyData payload bytes per statement
    max_phi_bytes_per_hour: int | None = None
    alert: bool = False
    description: str | None = None
    approval: Approval | None = None  # requires_approval: allows only under a grant

    def allows(self, item: str) -> bool:
        """True if ``item`` (a class or ``dangerous``) is in this rule's allow list."""
        if item in self.allow:
            return True
        return item != DANGEROUS and ALL in self.allow

    def denies_class(self, item: str) -> bool:
        if item in self.deny:
            return True
        return item != DANGEROUS and item in CLASSES and ALL in self.deny

    def when_text(self) -> str:
        """The time condition in words, for hints: "07:00-19:00 mon,tue America/New_York"."""
        parts = []
        if self.hours is not None:
            parts.append(self.hours.text)
        if self.days is not None:
            parts.append(",".join(DAY_NAMES[d] for d in sorted(self.days)))
        if parts:
            parts.append(self.timezone.key)
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Policy:
    """One policy file: PHI table patterns, rules, and whether it is enforced or a dry run."""

    source: str
    sha256: str
    phi_tables: tuple[str, ...]
    rules: tuple[Rule, ...]
    enforce: bool = True
    phi_columns: tuple[ColumnPattern, ...] = ()
    masking: tuple[MaskingRule, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer for a query string (or one statement of it).

    ``action`` is what the gateway does. ``verdict`` is what the policies said; the two differ only
    when a dry-run file (``enforce: false``) would have denied: then ``action`` is "allow",
    ``would_deny`` is True (so ``verdict`` is "deny") and ``enforce`` is False. ``sqlstate`` is
    set only when ``action`` is "deny". ``max_rows`` is the run-time row cap (min over the
    allowing rules), counting every row of the statement including FETCHes from a cursor it
    declared and every Execute of a portal.
    ``statements`` are the classifications the decision was made on, so the gateway can record
    session effects (PREPARE, DECLARE, SET phigate.reason) once the statement succeeds. ``parts``
    holds one decision per statement when the query string had several.
    """

    action: Action
    rules: tuple[str, ...]
    reason: str
    hint: str | None = None
    classes: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    phi_tables: tuple[str, ...] = ()
    max_rows: int | None = None
    max_phi_rows_per_hour: int | None = None
    row_weight: int = 1  # PHI rows one result row carries (policies.weights); max_rows is
    # then already divided by it, and each row counts that many toward the hourly budget
    max_bytes: int | None = None
    max_bytes_derived: bool = False  # max_bytes comes from max_rows (policies.sizes)
    max_phi_bytes_per_hour: int | None = None
    alert: bool = False
    enforce: bool = True
    would_deny: bool = False  # a dry-run file would have denied; nothing was blocked
    bulk_export: bool = False
    export_via: tuple[str, ...] = ()  # what made it an export: "aggregate jsonb_agg", ...
    dangerous: bool = False
    masked: bool = False  # PHI allowed only masked (a `phi: masked` rule, none with phi: allow)
    statements: tuple[Statement, ...] = ()
    parts: tuple[Decision, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.action == "allow"

    @property
    def sqlstate(self) -> str | None:
        if self.action != "deny":
            return None
        return SQLSTATE_TOO_COMPLEX if self.rules == (TOO_COMPLEX,) else SQLSTATE_DENIED

    @property
    def verdict(self) -> Action:
        """What the policies said, including dry-run files."""
        return "deny" if self.would_deny or self.action == "deny" else "allow"


def minute_of_day(moment: dt.datetime) -> int:
    return moment.hour * 60 + moment.minute
