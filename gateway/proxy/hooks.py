"""The one interception point: every statement and every result passes through here.

The relay (``gateway/proxy/relay.py``) drives these hooks; nothing else in the
gateway sees statements. The journal, the policy engine and the recorder
attach by implementing :class:`Hook` and being listed in the server's
:class:`HookChain`; none of them touches protocol code.

Order per statement (fixed): ``before_statement`` of every hook, in chain
order (policy → journal → recorder), *before* the statement is forwarded.
Every hook runs, even after an earlier one refused, so the journal records
refused statements too; ``statement.verdict`` shows each hook what the hooks
before it decided. The first refusal is the one the client sees: the
statement is not forwarded, the client receives the refusal's ErrorResponse
(the session stays usable, exactly as after a server-side error), and
``after_statement`` still runs with ``outcome.refused`` set. A hook that
raises is a refusal too (fail closed): the client sees SQLSTATE 58000
``internal error`` and the exception is logged.

Session hooks: ``authenticated`` for every login attempt (success or not),
``session_started`` before the client sees ReadyForQuery (raising a
GatewayError refuses the session), ``session_ended`` once both sides closed,
called in reverse chain order so later hooks can leave ``summary.annotations``
for earlier ones.

When is ``before_statement`` called?

* ``SIMPLE``   — a Query message (one call per query string, which may hold
  several statements).
* ``PARSE``    — an extended-protocol Parse. Nothing runs yet; policy decides here.
* ``EXECUTE``  — an extended-protocol Execute, with the SQL of the bound
  statement and the Bind parameters (raw wire values and their formats).
* ``FUNCTION`` — a FunctionCall message (fast-path function call). The relay
  knows only the function's OID; a hook that resolves it may replace ``sql``
  with the call it amounts to (the policy hook writes ``SELECT s.f($1, …)``).

``after_statement`` runs once for every SIMPLE, EXECUTE and FUNCTION statement
that was forwarded or refused, when its result is complete (CommandComplete,
ErrorResponse, EmptyQueryResponse or PortalSuspended for a portal with more
rows; ReadyForQuery for a FUNCTION, whose FunctionCallResponse counts as one
row), with an :class:`Outcome`. It must not block: it is called from the
relay's hot path; hooks that do I/O queue work for later.

A decider that proves a statement changes nothing sets ``statement.read_only``; the
journal hook may then return without waiting for the entry and leave its future in
``statement.durable``. The relay forwards such a statement at once but holds every byte
of the upstream's answer until that future resolves; if it fails, the answer is
discarded and the session ends with the journal's error (53100/58030). Writes, and every
statement nobody proved read-only, keep strict write-ahead.

The relay sets ``statement.pipelined`` when more statements of the client's pipeline are
already read behind this one. The journal hook may then return without waiting and leave
the entry's future in ``statement.write_ahead``: the relay decides the statements behind
it meanwhile (their entries share one write) but forwards this one only once the future
resolves; if it raises (a StatementRefused), the statement is refused with that error
instead. Strict write-ahead either way: nothing runs before its entry is durable.

A verdict may also carry a ``row_limit``: the relay then forwards at most that
many DataRows for the statement (counting every Execute of a suspended portal),
cancels the upstream query and sends the limit's error instead of the rest.

A verdict may carry a ``result_filter`` (:class:`ResultFilter`): the relay then asks it,
for each result the statement produces, for a :class:`RowTransformer` — given the result's
RowDescription (the statement's own, or for an Execute the Describe answer of its portal or
prepared statement, None when the client never described it) and the result column formats,
or given the COPY statement's CopyOutResponse. Every DataRow (or COPY TO CopyData) of that
result is then replaced by what the transformer returns; row and byte counts, limits and
captured rows (recordings) see the transformed frames. A filter or transformer that raises
:class:`StatementRefused` ends the result with that error, as a row limit does. Statements
without a filter keep the verbatim fast path.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from protocols.postgres import messages as m
from protocols.postgres import peek
from protocols.postgres.decoder import decode_frontend

from ..errors import StatementRefused
from .names import SessionNames

if TYPE_CHECKING:
    from ..settings.config import Settings

log = logging.getLogger("phigate.hooks")


class Phase(enum.Enum):
    SIMPLE = "simple"
    PARSE = "parse"
    EXECUTE = "execute"
    FUNCTION = "function"


class EndReason(enum.Enum):
    CLIENT_TERMINATE = "client_terminate"
    CLIENT_DISCONNECT = "client_disconnect"
    UPSTREAM_DISCONNECT = "upstream_disconnect"
    IDLE_TIMEOUT = "idle_timeout"
    SHUTDOWN = "shutdown"
    PROTOCOL_ERROR = "protocol_error"
    REFUSED = "refused"  # a session hook refused the session before it began
    JOURNAL_FAILED = "journal_failed"  # a held answer's journal entry could not be written
    CREDENTIAL_EXPIRED = "credential_expired"  # the login's token expired (plus grace)
    WATCHDOG = "watchdog"  # no answer while the upstream waited for the gateway: a gateway bug


@dataclass(slots=True)
class TransactionWatch:
    """How a hook learns that the session's transaction is over: the relay calls ``on_idle``
    (once, clearing it first) at the next ReadyForQuery that says idle ('I': committed or
    rolled back). Set by a hook that must act then; costs the relay one test per
    ReadyForQuery otherwise."""

    on_idle: Callable[[], None] | None = None


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
    started_at: float = 0.0  # time.time() at start
    # The session's prepared statements and portals (one namespace for protocol and SQL).
    names: SessionNames = field(default_factory=SessionNames, compare=False, repr=False)
    transaction: TransactionWatch = field(default_factory=TransactionWatch, compare=False,
                                          repr=False)


@dataclass(frozen=True, slots=True)
class AuthEvent:
    """One login attempt, successful or not."""

    user: str  # as the client gave it
    client_ip: str
    client_port: int
    database: str
    success: bool
    method: str
    tls: str | None
    failure: str | None = None
    # What the login method journals (SSO: issuer, subject, token id); never a credential.
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RowLimit:
    """Stop a result after ``max_rows`` rows, or once its DataRow/CopyData payloads pass
    ``max_bytes``, and send ``error`` (``byte_error`` for a byte cut) instead of the rest."""

    max_rows: int
    error: StatementRefused
    max_bytes: int | None = None
    byte_error: StatementRefused | None = None


class RowTransformer(Protocol):
    """Rewrites the DataRow (or CopyData) frames of one result; ``report`` goes to the
    Outcome (``outcome.transformed``) for the journal."""

    def transform(self, frame: bytes) -> bytes:
        """The frame the client receives instead of ``frame`` (a whole wire message)."""

    def report(self) -> dict[str, object]:
        """What was rewritten, for ``Outcome.transformed``."""


class ResultFilter(Protocol):
    """Decides, per result of a statement, whether and how its rows are rewritten."""

    def rows(self, description: bytes | None, formats: Sequence[int] | None
             ) -> RowTransformer | None:
        """``formats``: the Bind's result formats; None: as the description says."""

    def copy_out(self, response: bytes) -> RowTransformer | None:
        """A COPY TO result, given its CopyOutResponse."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """A hook's answer. ``rewrite_sql`` (simple queries only) is forwarded instead of the
    client's text; an empty rewrite is answered by the gateway with ``local_tag``."""

    refusal: StatementRefused | None = None
    row_limit: RowLimit | None = None
    rewrite_sql: str | None = None
    local_tag: str | None = None
    result_filter: ResultFilter | None = None


ALLOW = Verdict()


@dataclass(slots=True)
class Statement:
    """One statement as the relay sees it. Hooks may annotate ``tags`` for later hooks.

    Bind parameters are decoded from the raw Bind frame only when a hook asks
    for them, so statements nobody inspects cost no decoding.
    """

    session: SessionInfo
    number: int
    phase: Phase
    sql: str
    statement_name: str = ""
    portal_name: str = ""
    bind_frame: bytes | None = None
    function_call: m.FunctionCall | None = None
    tags: dict[str, object] = field(default_factory=dict)
    verdict: Verdict = ALLOW  # what the hooks so far decided
    capture_rows: int = 0  # a hook wants this many result rows (raw frames) in the Outcome
    received_at: float = 0.0  # time.perf_counter() when the relay read the statement
    # Set by a decider that proved the statement changes nothing (policies.readonly): it
    # may then run upstream before its journal entry is durable.
    read_only: bool = False
    # The session was idle outside a transaction when this statement arrived (nothing in
    # flight, the last ReadyForQuery said "I"): whatever it did before is committed.
    idle_before: bool = False
    # Set by the journal hook when it did not wait for a read-only statement's entry: the
    # relay forwards the statement but holds every byte of the upstream's answer until
    # this resolves; if it raises (a StatementRefused), the answer is discarded and the
    # session ends with that error. None: the entry is already durable (write-ahead).
    durable: asyncio.Future[int] | None = None
    # Set by the relay: more statements of the client's pipeline are read behind this one.
    pipelined: bool = False
    # Set by the journal hook when it did not wait for a pipelined statement's entry: the
    # relay forwards the statement only once this resolves, refuses it if this raises.
    write_ahead: asyncio.Future[int] | None = None
    # False when the session has standard_conforming_strings off: backslashes escape in '…'.
    standard_strings: bool = True
    _bind: m.Bind | None = field(default=None, init=False, repr=False)
    _params: tuple[bytes | None, ...] | None = field(default=None, init=False, repr=False)

    def _decoded_bind(self) -> m.Bind | None:
        if self._bind is None and self.bind_frame is not None:
            bind = decode_frontend(self.bind_frame)
            assert isinstance(bind, m.Bind)  # the relay only stores Bind frames here
            self._bind = bind
        return self._bind

    @property
    def parameters(self) -> Sequence[bytes | None]:
        if self.function_call is not None:
            return self.function_call.args
        if self._params is None:
            # The journal reads them for every Execute: the values alone, not a whole Bind.
            self._params = (() if self.bind_frame is None else self._bind.params
                            if self._bind is not None else peek.bind_parameters(self.bind_frame))
        return self._params

    @property
    def parameter_formats(self) -> Sequence[int]:
        if self.function_call is not None:
            return self.function_call.arg_formats
        bind = self._decoded_bind()
        return bind.param_formats if bind else ()


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
    byte_limit_hit: bool = False  # the cut was max_bytes; bytes_to_client is what was sent
    gateway_latency_s: float = 0.0  # from reading the statement to forwarding it
    # Filled only when a hook asked for ``statement.capture_rows``; raw wire frames.
    row_description: bytes | None = None
    sample: list[bytes] | None = None  # DataRow or CopyData (COPY TO) frames, in order
    notices: list[bytes] = field(default_factory=list)
    error_frame: bytes | None = None
    copy_direction: str | None = None  # "in" or "out" for COPY
    copy_in_bytes: int = 0
    copy_in_sample: list[bytes] | None = None  # CopyData frames the client sent
    transformed: dict[str, object] | None = None  # RowTransformer.report(): what was masked


@dataclass(slots=True)
class SessionSummary:
    statements: int = 0
    refused: int = 0
    rows: int = 0
    end: EndReason = EndReason.CLIENT_DISCONNECT
    # Hooks later in the chain end first and may leave fields here for earlier ones
    # (the recorder leaves the recording's digest for the journal's session_end entry).
    annotations: dict[str, object] = field(default_factory=dict)


class MustAwait:
    """The type of :data:`MUST_AWAIT`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MUST_AWAIT"


# Returned by ``Hook.before_statement_now`` when the hook cannot decide without waiting: the
# chain then awaits the hook's ``before_statement`` for this statement instead.
MUST_AWAIT = MustAwait()


class Hook:
    """Base class for hooks: every method is a no-op until overridden.

    A hook that mostly decides without waiting may also override ``before_statement_now``
    (synchronous: the chain then costs no coroutine and no await for it) and return
    :data:`MUST_AWAIT` when it must wait; the chain then awaits ``before_statement`` for
    that statement (so it must not have changed anything before it says so). Both must
    decide alike. Hooks that override neither, or not
    ``after_statement``, cost the chain nothing for that method.
    """

    async def before_statement(self, statement: Statement) -> Verdict | None:
        return None

    def before_statement_now(self, statement: Statement) -> Verdict | None | MustAwait:
        return MUST_AWAIT

    def after_statement(self, statement: Statement, outcome: Outcome) -> None:
        return None

    def authenticated(self, event: AuthEvent) -> None:
        return None

    async def session_started(self, session: SessionInfo) -> None:
        return None

    def session_ended(self, session: SessionInfo, summary: SessionSummary) -> None:
        return None

    def config_loaded(self, settings: Settings) -> None:
        """A configuration came into force (at start-up and after each SIGHUP reload)."""
        return None

    def upstream_failed(self, database: str) -> None:
        """Connecting to the upstream of ``database`` (the config key) failed."""
        return None


class InternalHookError(StatementRefused):
    """A hook failed; the statement is refused rather than run unchecked."""

    sqlstate = "58000"


def _merge(verdict: Verdict, new: Verdict) -> Verdict:
    if verdict.refusal is not None or new is ALLOW:
        return verdict
    if new.refusal is not None:
        return new
    if verdict is ALLOW and (new.local_tag is None or new.rewrite_sql is not None):
        return new  # merging into nothing: the new verdict as it is
    row_limit = _tighter(verdict.row_limit, new.row_limit)
    rewrite = new.rewrite_sql if new.rewrite_sql is not None else verdict.rewrite_sql
    tag = new.local_tag if new.rewrite_sql is not None else verdict.local_tag
    result_filter = new.result_filter or verdict.result_filter
    return Verdict(row_limit=row_limit, rewrite_sql=rewrite, local_tag=tag,
                   result_filter=result_filter)


def _tighter(old: RowLimit | None, new: RowLimit | None) -> RowLimit | None:
    """Both limits hold: the smaller row count and the smaller byte count, each with its own
    message."""
    if old is None or new is None:
        return new if old is None else old
    rows = new if new.max_rows < old.max_rows else old
    sizes = [limit for limit in (old, new) if limit.max_bytes is not None]
    size = min(sizes, key=lambda limit: limit.max_bytes or 0, default=None)
    if size is None or size is rows:
        return rows
    return RowLimit(rows.max_rows, rows.error, size.max_bytes, size.byte_error)


class HookChain:
    """The configured hooks, run in order; fail closed on exceptions.

    Which hooks take part in a statement is worked out once, here: a hook that overrides
    neither ``before_statement`` nor ``before_statement_now`` is skipped, one that has a
    synchronous form is called without a coroutine, and only hooks that override
    ``after_statement`` are called with the outcome.
    """

    __slots__ = ("hooks", "_before", "_after")

    def __init__(self, hooks: Sequence[Hook] = ()) -> None:
        self.hooks = tuple(hooks)
        # (hook, its synchronous form or None): in chain order, only hooks that decide.
        self._before = tuple((hook, _now_form(hook)) for hook in self.hooks
                             if _overrides(hook, "before_statement")
                             or _overrides(hook, "before_statement_now"))
        self._after = tuple(hook.after_statement for hook in self.hooks
                            if _overrides(hook, "after_statement"))

    async def before_statement(self, statement: Statement) -> Verdict:
        for hook, now in self._before:
            try:
                verdict = MUST_AWAIT if now is None else now(statement)
                if verdict is MUST_AWAIT:
                    verdict = await hook.before_statement(statement)
            except StatementRefused as refusal:
                verdict = Verdict(refusal=refusal)
            except Exception as e:  # a broken hook never lets a statement through
                verdict = _internal_error(hook, statement, e)
            if verdict is not None:
                statement.verdict = _merge(statement.verdict, verdict)  # type: ignore[arg-type]
        return statement.verdict

    def after_statement(self, statement: Statement, outcome: Outcome) -> None:
        for after in self._after:
            try:
                after(statement, outcome)
            except Exception:  # result-side hooks never break a delivered result
                log.exception("hook %s failed", getattr(after, "__qualname__", after))

    def authenticated(self, event: AuthEvent) -> None:
        for hook in self.hooks:
            _best_effort(hook.authenticated, event)

    async def session_started(self, session: SessionInfo) -> None:
        """Start the session in every hook; if one refuses, end it in those that started."""
        started: list[Hook] = []
        try:
            for hook in self.hooks:
                await hook.session_started(session)
                started.append(hook)
        except BaseException:
            refused = SessionSummary(end=EndReason.REFUSED)
            for hook in reversed(started):
                _best_effort(hook.session_ended, session, refused)
            raise

    def session_ended(self, session: SessionInfo, summary: SessionSummary) -> None:
        for hook in reversed(self.hooks):  # teardown in reverse order, like a stack
            _best_effort(hook.session_ended, session, summary)

    def config_loaded(self, settings: Settings) -> None:
        for hook in self.hooks:
            _best_effort(hook.config_loaded, settings)

    def upstream_failed(self, database: str) -> None:
        for hook in self.hooks:
            _best_effort(hook.upstream_failed, database)


def _overrides(hook: Hook, name: str) -> bool:
    """``hook`` has its own ``name`` (a class attribute other than Hook's, or one of its own)."""
    return getattr(type(hook), name, None) is not getattr(Hook, name) or name in getattr(
        hook, "__dict__", {})


def _now_form(hook: Hook) -> Callable[[Statement], Verdict | None | MustAwait] | None:
    """The hook's synchronous form, if it has one."""
    return hook.before_statement_now if _overrides(hook, "before_statement_now") else None


def _internal_error(hook: Hook, statement: Statement, e: Exception) -> Verdict:
    log.exception("hook %s failed; refusing statement", type(hook).__name__,
                  extra={"session": statement.session.session_id}, exc_info=e)
    return Verdict(refusal=InternalHookError(
        "phigate: internal error, statement refused", detail=type(e).__name__))


def _best_effort(method: Callable[..., None], *args: object) -> None:
    """Result-side hooks never break a session that already delivered its result."""
    try:
        method(*args)
    except Exception:
        log.exception("hook %s failed", getattr(method, "__qualname__", method))
