"""The one interception point: every statement and every result passes through here.

The relay (``gateway/relay.py``) drives these hooks; nothing else in the
gateway sees statements. The journal, the policy engine and the recorder
attach by implementing :class:`Hook` and being listed in the server's
:class:`HookChain`; none of them touches protocol code.

Order per statement (fixed): ``before_statement`` of every hook, in chain
order, *before* the statement is forwarded. The first hook that returns a
:class:`Verdict` with a ``refusal`` stops the chain: the statement is not
forwarded, the client receives the refusal's ErrorResponse (the session stays
usable, exactly as after a server-side error), and ``after_statement`` still
runs with ``outcome.refused`` set. A hook that raises is a refusal too (fail
closed): the client sees SQLSTATE 58000-class ``internal error`` and the
exception is logged.

When is ``before_statement`` called?

* ``SIMPLE``   — a Query message (one call per query string, which may hold
  several statements).
* ``PARSE``    — an extended-protocol Parse. Nothing runs yet; policy decides here.
* ``EXECUTE``  — an extended-protocol Execute, with the SQL of the bound
  statement and the Bind parameters (raw wire values and their formats).
* ``FUNCTION`` — a FunctionCall message (fast-path function call).

``after_statement`` runs once for every SIMPLE, EXECUTE and FUNCTION statement
that was forwarded or refused, when its result is complete (CommandComplete,
ErrorResponse, EmptyQueryResponse or PortalSuspended for a portal with more
rows), with an :class:`Outcome`. It must not block: it is called from the
relay's hot path; hooks that do I/O queue work for later.

A verdict may also carry a ``row_limit``: the relay then forwards at most that
many DataRows for the statement (counting every Execute of a suspended portal),
cancels the upstream query and sends the limit's error instead of the rest.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .errors import GatewayError, StatementRefused


class Phase(enum.Enum):
    SIMPLE = "simple"
    PARSE = "parse"
    EXECUTE = "execute"
    FUNCTION = "function"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Who is on the other end of a session; fixed once the session is authenticated."""

    session_id: str
    identity: str
    groups: frozenset[str]
    client_ip: str
    client_port: int
    database: str
    application_name: str
    tls: str | None  # e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384", None for plaintext
    reason: str | None = None


@dataclass(slots=True)
class Statement:
    """One statement as the relay sees it. Hooks may annotate ``tags`` for later hooks."""

    session: SessionInfo
    number: int
    phase: Phase
    sql: str
    statement_name: str = ""
    portal_name: str = ""
    parameters: Sequence[bytes | None] = ()
    parameter_formats: Sequence[int] = ()
    tags: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RowLimit:
    """Stop a result after ``max_rows`` rows and send ``error`` instead of the rest."""

    max_rows: int
    error: StatementRefused


@dataclass(frozen=True, slots=True)
class Verdict:
    refusal: StatementRefused | None = None
    row_limit: RowLimit | None = None


ALLOW = Verdict()


@dataclass(slots=True)
class Outcome:
    """How a forwarded (or refused) statement ended."""

    rows: int = 0
    bytes_to_client: int = 0
    duration_s: float = 0.0
    command_tags: list[str] = field(default_factory=list)
    sqlstate: str | None = None
    error_message: str | None = None
    refused: bool = False
    suspended: bool = False  # PortalSuspended: more rows may follow on a later Execute
    row_limit_hit: bool = False


class Hook(Protocol):
    async def before_statement(self, statement: Statement) -> Verdict | None: ...

    def after_statement(self, statement: Statement, outcome: Outcome) -> None: ...


class InternalHookError(GatewayError):
    """A hook failed; the statement is refused rather than run unchecked."""

    sqlstate = "58000"
    severity = "ERROR"


class HookChain:
    """The configured hooks, run in order; fail closed on exceptions."""

    __slots__ = ("hooks",)

    def __init__(self, hooks: Sequence[Hook] = ()) -> None:
        self.hooks = tuple(hooks)

    async def before_statement(self, statement: Statement) -> Verdict:
        row_limit: RowLimit | None = None
        for hook in self.hooks:
            verdict = await hook.before_statement(statement)
            if verdict is None:
                continue
            if verdict.refusal is not None:
                return verdict
            if verdict.row_limit is not None and (
                    row_limit is None or verdict.row_limit.max_rows < row_limit.max_rows):
                row_limit = verdict.row_limit
        return Verdict(row_limit=row_limit) if row_limit else ALLOW

    def after_statement(self, statement: Statement, outcome: Outcome) -> None:
        for hook in self.hooks:
            hook.after_statement(statement, outcome)
