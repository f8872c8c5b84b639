"""The policy hook: every statement is decided before it reaches the database.

First in the hook chain, so the journal records each decision with the
statement. Owns what the pure engine cannot: per-session state (reason, its
decisions on the session's prepared statements and portals, kept with
them in ``SessionInfo.names``: one namespace for SQL and protocol), the
per-identity PHI-row budget, view dependencies from the upstream catalog, the
clock, and reloading policy files on SIGHUP (a bad file keeps the old policy).

* Simple Query: decided as a whole string; ``SET phigate.reason`` is consumed
  (cut out of the string, or answered by the gateway when it is all there is).
* Parse: decided once classified; a denial becomes an error in the pipeline.
* Execute: decided again with the current context (time windows and budgets
  move), and ``max_rows`` becomes a row limit counting every Execute of the
  portal and every FETCH from a declared cursor.
* Fast-path FunctionCall: the function's OID is looked up in the upstream's
  ``pg_proc`` and the call decided as the ``SELECT schema.name($1, …)`` it amounts to
  (``policies.fastpath``: large-object reads and writes, dangerous server-side
  ``lo_import``/``lo_export``); an OID the catalog does not know is denied.
* Catalog reads that fail refuse what needs them: a session whose view dependencies
  cannot be read does not start, a call whose function cannot be looked up is denied.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from policies.budget import PhiBudget
from policies.classify import classify
from policies.context import RequestContext
from policies.engine import Engine
from policies.fastpath import call_sql, classify_call
from policies.loader import PolicyError, load_policies
from policies.model import SQLSTATE_TOO_COMPLEX, Decision
from policies.readonly import Volatility, changes_nothing
from policies.statement import Classification
from policies.statement import Statement as Classified
from policies.steps import DEFAULT_MAX_STEPS

from ..clock import Clock
from ..errors import (
    ConfigError,
    PolicyDenied,
    RowLimitExceeded,
    StatementTooComplex,
    SyntaxRejected,
)
from ..journal.hook import POLICY_TAG
from ..proxy.hooks import (
    MUST_AWAIT,
    Hook,
    MustAwait,
    Outcome,
    Phase,
    RowLimit,
    SessionInfo,
    SessionSummary,
    Statement,
    Verdict,
)
from ..settings.config import Settings
from .catalog import CatalogUnavailable, Dependencies, Function, ViewCatalog, VolatilityRef
from .reuse import Reuse, made_on, remember, reusable
from .widths import RowWidthCatalog

log = logging.getLogger("phigate.policy")

DECISION_TAG = "decision"
CURSORS_TAG = "fetches"  # cursors a statement FETCHes from, to count rows across FETCHes
UNPROVEN_TAG = "policy_unproven"  # counted in _SessionState.unproven_in_flight until done
REASON_EFFECTS = frozenset({"set_reason", "reset_reason"})
NO_ROW_LIMIT = 2**62  # a byte limit without a row limit: rows are not what is counted
MAX_SESSION_DECISIONS = 1024  # per-session decision cache; cleared when full
# Within this long after its Parse, an Execute is decided as the Parse was: time windows and
# budgets cannot have moved enough to matter, and row limits are still computed afresh.
REUSE_PARSE_DECISION_S = 1.0


def load_engine(policy_files: Iterable[Path], *, previous: Engine | None = None,
                max_steps: int = DEFAULT_MAX_STEPS) -> Engine:
    """Read and validate policy files into an engine. Raises ConfigError."""
    files = []
    for path in policy_files:
        try:
            files.append((path.read_text(encoding="utf-8"), str(path)))
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read policy file: {e}", file=str(path)) from e
    try:
        return Engine(load_policies(files), cache=previous.cache if previous else None,
                      max_steps=max_steps)
    except PolicyError as e:
        raise ConfigError(str(e)) from e


_Decided = tuple[Decision, dict[str, object]]  # a decision and its journal fields


@dataclass(slots=True)
class _SessionState:
    info: SessionInfo
    reason: str | None
    views: Dependencies
    cursor_limits: dict[str, int] = field(default_factory=dict)
    cursor_rows: dict[str, int] = field(default_factory=dict)
    cursor_byte_limits: dict[str, int] = field(default_factory=dict)
    cursor_bytes: dict[str, int] = field(default_factory=dict)
    widths: Mapping[str, int] = field(default_factory=dict)  # row widths, policies.sizes
    volatility: VolatilityRef = field(default_factory=VolatilityRef)
    # Statements forwarded and not yet complete that were not proved read-only: while any
    # is in flight (e.g. DDL in a pipeline), nothing is proved read-only (it may change
    # what a later statement's functions do).
    unproven_in_flight: int = 0
    holds_catalog: bool = False  # ran DDL; releases the volatility hold once idle again
    # The view dependencies being read again after this session's DDL: the next statement
    # waits for them (decided on the old ones, a view just redefined over PHI reads as none).
    refreshing: asyncio.Task[None] | None = None
    # Parse'd statement name -> (text, decision, when, names.version if it names a statement
    # or cursor: a decision that depends on the table of names is reused only while it holds).
    parsed: dict[str, tuple[str, _Decided, float, int | None]] = field(default_factory=dict)
    decisions: dict[int, tuple[Classification, tuple[object, ...], _Decided]] = field(
        default_factory=dict)
    # Decisions that leave nothing to work out per statement (no row or byte limit, no
    # cursor, no reason setting): the decision → whether it was proved read-only, with the
    # catalog facts the proof used (it is redone when either is replaced).
    plain: dict[int, tuple[_Decided, Volatility, Dependencies, bool]] = field(
        default_factory=dict)
    # The fast path (gateway/policy/reuse.py): plain decisions by text and by classification.
    reuse: dict[str, Reuse] = field(default_factory=dict)
    shapes: dict[int, Reuse] = field(default_factory=dict)


class PolicyHook(Hook):
    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        # identity -> {requires_approval rule: grant id} held now; the assembly attaches
        # the access wing's watcher here when a policy has requires_approval rules
        self.grants: Callable[[str], Mapping[str, str]] = _no_grants
        self.engine = load_engine(settings.policy_files, max_steps=settings.limits.policy_steps)
        if not settings.policy_files:
            log.warning("no policy files configured: every statement will be denied")
        self._settings = settings
        self._clock = clock or Clock()
        self._budget = PhiBudget()
        self._byte_budget = PhiBudget()  # PHI payload bytes per identity, the same hour
        self._catalog = ViewCatalog(settings.limits.max_message_size)
        self._widths = RowWidthCatalog(settings.limits.max_message_size)
        self._sessions: dict[str, _SessionState] = {}
        self._refreshes: set[asyncio.Task[None]] = set()
        self._generation = 0

    # ---------------------------------------------------------------- lifecycle

    def policies_in_force(self) -> dict[str, str]:
        """Each enforced policy file and the SHA-256 of the text it was loaded from."""
        return {policy.source: policy.sha256 for policy in self.engine.policies}

    @property
    def uses_approval(self) -> bool:
        """Some loaded rule has ``requires_approval`` (so grants must be looked up)."""
        return any(rule.approval is not None for p in self.engine.policies for rule in p.rules)

    def config_loaded(self, settings: Settings) -> None:
        try:
            engine = load_engine(settings.policy_files, previous=self.engine,
                                 max_steps=settings.limits.policy_steps)
        except ConfigError as e:
            log.error("policy reload failed, keeping the policies in force: %s", e)
            return
        self.engine, self._settings = engine, settings
        self._generation += 1  # decisions cached by sessions were made on the old policies
        log.info("policies loaded", extra={"files": [str(p) for p in settings.policy_files]})

    async def session_started(self, session: SessionInfo) -> None:
        db = self._settings.database_for(session.database)
        views: Dependencies = {}
        volatility = VolatilityRef()  # nothing known: nothing proved read-only
        if db is not None:
            dbname = db.dbname or session.database
            try:
                views = await self._catalog.dependencies(db, dbname)
            except CatalogUnavailable as e:  # fail closed: a view of PHI would read as no PHI
                log.error("could not read view dependencies; session refused: %s", e.message,
                          extra={"session": session.session_id})
                raise CatalogUnavailable(
                    "phigate: the session cannot start: the upstream catalog (view "
                    f"dependencies) could not be read: {e.message.removeprefix('phigate: ')}",
                    hint="try again in a moment") from e
            volatility = await self._catalog.ready(db, dbname)
        state = _SessionState(session, session.reason, views, volatility=volatility)
        if db is not None:
            try:
                state.widths = await self._widths.widths(db, db.dbname or session.database)
            except Exception as e:  # every table then counts the default row width
                log.error("could not read row widths: %s", e)
        self._sessions[session.session_id] = state

    def session_ended(self, session: SessionInfo, summary: SessionSummary) -> None:
        state = self._sessions.pop(session.session_id, None)
        if state is not None and state.holds_catalog:
            self._release_catalog(state)

    # ---------------------------------------------------------------- deciding

    def _context(self, state: _SessionState, now: dt.datetime, grants: frozenset[str], *,
                 names: bool = False) -> RequestContext:
        """The request context; the session's prepared statements and cursors (one table
        with the protocol's, ``SessionInfo.names``) only when the statement names one."""
        info = state.info
        table = info.names
        prepared = table.decided_statements() if names else {}
        cursors = table.decided_portals() if names else {}
        return RequestContext(
            identity=info.identity, database=info.database, now=now, groups=info.groups,
            client_ip=info.client_ip, reason=state.reason,
            phi_rows_last_hour=self._budget.used(info.identity, now),
            phi_bytes_last_hour=self._byte_budget.used(info.identity, now),
            row_widths=state.widths,
            view_dependencies=state.views,
            functions=state.volatility.functions,
            prepared=prepared,  # type: ignore[arg-type]  # the hook stores only Classified
            cursors=cursors, grants=grants)  # type: ignore[arg-type]

    def before_statement_now(self, statement: Statement) -> Verdict | None | MustAwait:
        if statement.phase is Phase.FUNCTION:
            return MUST_AWAIT  # the function's OID is looked up in the upstream catalog
        if self._refreshing(statement) is not None:
            return MUST_AWAIT
        state = self._state(statement)
        if state is None:
            return None
        text = _decided_text(statement)
        reuse = state.reuse.get(text)
        if reuse is not None and self._reusable(state, statement, reuse):
            return self._reused(state, statement, reuse)
        return self._decide_statement(state, statement, text)

    async def before_statement(self, statement: Statement) -> Verdict | None:
        refreshing = self._refreshing(statement)
        if refreshing is not None:
            await asyncio.shield(refreshing)  # it logs its own failure; shared, not cancelled
        if statement.phase is not Phase.FUNCTION:
            return self.before_statement_now(statement)  # type: ignore[return-value]
        state = self._state(statement)
        return None if state is None else await self._function_call(state, statement)

    def _refreshing(self, statement: Statement) -> asyncio.Task[None] | None:
        """The session's view refresh, while it is still running."""
        state = self._sessions.get(statement.session.session_id)
        task = None if state is None else state.refreshing
        return None if task is None or task.done() else task

    def _state(self, statement: Statement) -> _SessionState | None:
        """The session's state; None when there is nothing to decide (refused before us)."""
        state = self._sessions.get(statement.session.session_id)
        if state is None:
            raise PolicyDenied("phigate: session unknown to the policy engine")
        if statement.verdict.refusal is not None:
            return None  # refused before us (text the encoding cannot read): nothing to decide
        if state.holds_catalog and statement.idle_before:
            self._release_catalog(state)  # the DDL's transaction is over: read it again
        return state

    def _reusable(self, state: _SessionState, statement: Statement, reuse: Reuse) -> bool:
        return (statement.standard_strings and self.grants is _no_grants
                and reusable(reuse, seconds=self._clock.seconds(), generation=self._generation,
                             reason=state.reason, views=state.views,
                             volatility=state.volatility))

    @staticmethod
    def _reused(state: _SessionState, statement: Statement, reuse: Reuse) -> None:
        """What the slow path does for a plain allowed decision, from its Reuse."""
        decided = reuse.decided
        statement.tags[DECISION_TAG] = decided[0]
        statement.tags[POLICY_TAG] = decided[1]
        if statement.phase is Phase.PARSE:
            state.parsed[statement.statement_name] = (statement.sql, decided, time.monotonic(),
                                                      None)
            _remember_parse(statement, reuse.classification)
            return
        PolicyHook._proved(state, statement, reuse.read_only)
        statement.tags[CURSORS_TAG] = ()

    def _decide_statement(self, state: _SessionState, statement: Statement, text: str
                          ) -> Verdict | None:
        classification = self.engine.classify(text, standard_strings=statement.standard_strings)
        reuse = state.shapes.get(id(classification))
        if (reuse is not None and reuse.classification is classification
                and self._reusable(state, statement, reuse)):
            return self._reused(state, statement, reuse)  # a text of the same shape
        now = self._clock.now()
        parsed = self._parsed_decision(state, statement)
        decided = parsed or self._decide(state, classification, now)
        decision, fields = decided
        # Decided at the Parse, maybe in an earlier minute: not for the fast path.
        fresh = parsed is None
        if statement.phase is Phase.PARSE:
            state.parsed[statement.statement_name] = (
                statement.sql, decided, time.monotonic(),
                state.info.names.version if _names_something(classification) else None)
        statement.tags[DECISION_TAG] = decision
        statement.tags[POLICY_TAG] = fields
        if not decision.allowed:
            if classification.syntax_error is not None and not classification.sql.startswith(
                    _SYNTHESIZED):
                raise SyntaxRejected(classification.syntax_error,
                                     position=classification.error_position)
            raise _refusal(decision)
        if statement.phase is Phase.PARSE:
            _remember_parse(statement, classification)
            if fresh and _plain(decision, None, _fetched_cursors(classification.statements)):
                self._may_reuse(state, statement, text, classification, decided, changes_nothing(
                    classification.statements, state.volatility.current, state.views), now)
            return None
        plain = state.plain.get(id(decided))
        if (plain is not None and plain[0] is decided and plain[1] is state.volatility.current
                and plain[2] is state.views):
            self._proved(state, statement, plain[3])
            statement.tags[CURSORS_TAG] = ()
            if fresh:
                self._may_reuse(state, statement, text, classification, decided, plain[3], now)
            return None
        self._prove_read_only(state, statement, classification)
        cursors = _fetched_cursors(classification.statements)
        statement.tags[CURSORS_TAG] = cursors
        row_limit = self._row_limit(state, decision, cursors, now)
        if row_limit is not None and row_limit.max_rows <= 0:
            raise row_limit.error
        rewrite = _without_reason_settings(statement, decision)
        if rewrite is None:
            if _plain(decision, row_limit, cursors):
                read_only = statement.read_only or changes_nothing(
                    classification.statements, state.volatility.current, state.views)
                _remember_plain(state, decided, read_only)
                if fresh:
                    self._may_reuse(state, statement, text, classification, decided, read_only,
                                    now)
            return Verdict(row_limit=row_limit) if row_limit else None
        return Verdict(row_limit=row_limit, rewrite_sql=rewrite, local_tag="SET")

    def _may_reuse(self, state: _SessionState, statement: Statement, text: str,
                   classification: Classification, decided: _Decided, read_only: bool,
                   now: dt.datetime) -> None:
        """Keep a plain allowed decision for the fast path, unless it depends on what moves
        per statement (names, grants) or on how the text was read."""
        if (not statement.standard_strings or self.grants is not _no_grants
                or "grants" in decided[1] or _names_something(classification)):
            return
        remember(state.reuse, state.shapes, text, made_on(
            classification, decided, read_only, seconds=now.timestamp(),
            generation=self._generation, reason=state.reason, views=state.views,
            volatility=state.volatility))

    @staticmethod
    def _prove_read_only(state: _SessionState, statement: Statement,
                         classification: Classification) -> None:
        PolicyHook._proved(state, statement, state.unproven_in_flight == 0 and changes_nothing(
            classification.statements, state.volatility.current, state.views))

    @staticmethod
    def _proved(state: _SessionState, statement: Statement, changes_nothing: bool) -> None:
        """Read-only if proved so and nothing unproven is in flight (it may change what the
        statement's functions do); else counted until it completes."""
        if changes_nothing and state.unproven_in_flight == 0:
            statement.read_only = True
        else:
            state.unproven_in_flight += 1
            statement.tags[UNPROVEN_TAG] = True

    async def _function_call(self, state: _SessionState, statement: Statement
                             ) -> Verdict | None:
        """A fast-path call, decided as the SQL call of the function its OID names."""
        call = statement.function_call
        assert call is not None  # the relay sets it for every FUNCTION statement
        function = await self._lookup(state, call.function_oid)
        classified = None if function is None else classify_call(
            function.schema, function.name, len(call.args))
        if function is None or classified is None:
            statement.tags[POLICY_TAG] = {"decision": "deny", "rules": ["fast-path"],
                                          "function_oid": call.function_oid}
            raise PolicyDenied(f"phigate: fast-path call of function {call.function_oid}, "
                               "which the upstream catalog does not list; denied",
                               hint="call the function from SQL instead")
        statement.sql = call_sql(function.schema, function.name, len(call.args))
        now = self._clock.now()
        held = self.grants(state.info.identity)  # re-read every call: revocable
        decision = self.engine.decide_statement(
            self._context(state, now, frozenset(held)), classified)
        statement.tags[DECISION_TAG] = decision
        statement.tags[POLICY_TAG] = {**_journal_fields(decision, held),
                                      "function": f"{function.schema}.{function.name}",
                                      "function_oid": call.function_oid}
        if not decision.allowed:
            raise _refusal(decision)
        state.unproven_in_flight += 1  # a call is never proved read-only: it runs write-ahead
        statement.tags[UNPROVEN_TAG] = True
        row_limit = self._row_limit(state, decision, (), now)
        if row_limit is not None and row_limit.max_rows <= 0:
            raise row_limit.error
        return Verdict(row_limit=row_limit) if row_limit else None

    async def _lookup(self, state: _SessionState, oid: int) -> Function | None:
        db = self._settings.database_for(state.info.database)
        if db is None:
            return None
        try:
            return await self._catalog.function(db, db.dbname or state.info.database, oid)
        except CatalogUnavailable as e:
            log.error("could not look up a fast-path function: %s", e.message,
                      extra={"session": state.info.session_id, "oid": oid})
            raise PolicyDenied(f"{e.message}; fast-path call of function {oid} denied",
                               hint="try again; the gateway could not check the call") from e

    def _decide(self, state: _SessionState, classification: Classification,
                now: dt.datetime) -> _Decided:
        """Decide, reusing this session's earlier decision on the same classification while
        nothing it depends on moved: the minute (time windows), the reason, the session's
        prepared statements and cursors, and the loaded policies. Decisions touching PHI are
        never reused, since the PHI-row budget can change them at any moment."""
        held = self.grants(state.info.identity)  # re-read every statement: revocable
        grants = frozenset(held)
        names = _names_something(classification)
        key = (int(now.timestamp() // 60), state.reason,
               state.info.names.version if names else 0, self._generation, grants,
               state.views, state.volatility.functions)  # catalogs compared by identity
        cached = state.decisions.get(id(classification))
        if cached is not None and cached[0] is classification and cached[1] == key:
            return cached[2]
        decision = self.engine.decide_classified(
            self._context(state, now, grants, names=names), classification)
        decided = (decision, _journal_fields(decision, held))
        if not decision.phi_tables:
            if len(state.decisions) >= MAX_SESSION_DECISIONS:
                state.decisions.clear()
            state.decisions[id(classification)] = (classification, key, decided)
        return decided

    @staticmethod
    def _parsed_decision(state: _SessionState, statement: Statement) -> _Decided | None:
        """An Execute right after its Parse reuses the Parse's decision (same batch)."""
        if statement.phase is not Phase.EXECUTE:
            return None
        parsed = state.parsed.get(statement.statement_name)
        if parsed is None:
            return None
        sql, decision, decided_at, version = parsed
        if sql != statement.sql or time.monotonic() - decided_at > REUSE_PARSE_DECISION_S:
            return None
        if "grants" in decision[1]:  # decided under a grant: ask again, it may be revoked
            return None
        if version is not None and version != statement.session.names.version:
            return None
        return decision

    def _row_limit(self, state: _SessionState, decision: Decision, cursors: tuple[str, ...],
                   now: dt.datetime) -> RowLimit | None:
        limit, rule = decision.max_rows, ",".join(decision.rules)
        for cursor in cursors:
            if cursor in state.cursor_limits:
                remaining = state.cursor_limits[cursor] - state.cursor_rows.get(cursor, 0)
                limit = remaining if limit is None else min(limit, remaining)
        if decision.phi_tables and decision.max_phi_rows_per_hour is not None:
            remaining = (decision.max_phi_rows_per_hour
                         - self._budget.used(state.info.identity, now)) // decision.row_weight
            limit = remaining if limit is None else min(limit, remaining)
        max_bytes = self._byte_limit(state, decision, cursors, now)
        if limit is None and max_bytes is None:
            return None
        return RowLimit(
            max(limit, 0) if limit is not None else NO_ROW_LIMIT,
            RowLimitExceeded(
                f"phigate: rule {rule}: result exceeds max_rows ({_rows_text(decision)}) "
                "or the hourly PHI row budget; no more rows sent",
                hint="add a WHERE clause or a LIMIT, or ask for a rule that allows more"),
            max_bytes=max(max_bytes, 0) if max_bytes is not None else None,
            byte_error=RowLimitExceeded(
                f"phigate: rule {rule}: result exceeds max_bytes ({_bytes_text(decision)}) "
                "or the hourly PHI byte budget; no more rows sent",
                hint="select fewer rows or columns (one row that folds many rows counts "
                     "all their bytes), or ask for a rule that allows more"))

    def _byte_limit(self, state: _SessionState, decision: Decision, cursors: tuple[str, ...],
                    now: dt.datetime) -> int | None:
        """Like the row limit: the statement's max_bytes, what its cursors have left, and what
        is left of the identity's hourly PHI byte budget."""
        limit = decision.max_bytes
        for cursor in cursors:
            if cursor in state.cursor_byte_limits:
                remaining = state.cursor_byte_limits[cursor] - state.cursor_bytes.get(cursor, 0)
                limit = remaining if limit is None else min(limit, remaining)
        if decision.phi_tables and decision.max_phi_bytes_per_hour is not None:
            remaining = (decision.max_phi_bytes_per_hour
                         - self._byte_budget.used(state.info.identity, now))
            limit = remaining if limit is None else min(limit, remaining)
        return limit

    # ---------------------------------------------------------------- afterwards

    def after_statement(self, statement: Statement, outcome: Outcome) -> None:
        decision = statement.tags.get(DECISION_TAG)
        state = self._sessions.get(statement.session.session_id)
        if state is not None and statement.tags.pop(UNPROVEN_TAG, False):
            state.unproven_in_flight -= 1
        if not isinstance(decision, Decision) or state is None or outcome.refused:
            return
        # A fast-path call's one result value is a row read only when the call reads data.
        reads = statement.phase is not Phase.FUNCTION or "select" in decision.classes
        payload = max(outcome.bytes_to_client - 5 * outcome.rows, 0)  # less frame headers
        if decision.phi_tables and outcome.rows and reads:
            self._budget.record(state.info.identity, outcome.rows * decision.row_weight,
                                self._clock.now())
            self._byte_budget.record(state.info.identity, payload, self._clock.now())
        cursors = statement.tags.get(CURSORS_TAG, ())
        for cursor in cursors if isinstance(cursors, tuple) else ():
            state.cursor_rows[cursor] = state.cursor_rows.get(cursor, 0) + outcome.rows
            state.cursor_bytes[cursor] = state.cursor_bytes.get(cursor, 0) + payload
        if outcome.sqlstate is None:
            self._apply_effects(state, decision)
            if "ddl" in decision.classes or any(s.command == "DO" for s in decision.statements):
                self._refresh_views(state)  # DO can create or replace functions unseen

    def _apply_effects(self, state: _SessionState, decision: Decision) -> None:
        """What a successful statement did to the session: reason, and the names it made or
        dropped, written to the session's one table of names (``SessionInfo.names``)."""
        parts = decision.parts or (decision,)
        names = state.info.names
        for part, classified in zip(parts, decision.statements, strict=False):
            effect = classified.effect
            if effect is None:
                continue
            if effect.kind == "prepare" and effect.name and effect.statement:
                names.prepared(effect.name, classified.text, effect.statement)
            elif effect.kind == "deallocate":
                names.deallocated(effect.name)
            elif effect.kind == "declare" and effect.name and effect.statement:
                names.declared(effect.name, classified.text, effect.statement)
                state.cursor_rows[effect.name] = 0
                state.cursor_bytes[effect.name] = 0
                if part.max_rows is not None:
                    state.cursor_limits[effect.name] = part.max_rows
                if part.max_bytes is not None:
                    state.cursor_byte_limits[effect.name] = part.max_bytes
            elif effect.kind == "close":
                names.closed(effect.name)
            elif effect.kind == "discard_all":
                names.deallocated(None)
                names.closed(None)
            elif effect.kind == "set_reason":
                state.reason = effect.value or None
            elif effect.kind == "reset_reason":
                state.reason = None

    def _refresh_views(self, state: _SessionState) -> None:
        db = self._settings.database_for(state.info.database)
        if db is None:
            return
        dbname = db.dbname or state.info.database
        self._catalog.invalidate(db, dbname)
        self._widths.invalidate(db, dbname)
        state.parsed.clear()  # decided on the catalog before the DDL: not for their Executes
        if not state.holds_catalog:
            state.holds_catalog = True
            self._catalog.hold(db, dbname)

        async def refresh() -> None:
            try:
                state.views = await self._catalog.dependencies(db, dbname)
            except Exception as e:
                log.error("could not refresh view dependencies: %s", e)

        task = asyncio.create_task(refresh(), name=f"views-{state.info.session_id}")
        state.refreshing = task
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    def _release_catalog(self, state: _SessionState) -> None:
        state.holds_catalog = False
        db = self._settings.database_for(state.info.database)
        if db is not None:
            self._catalog.release(db, db.dbname or state.info.database)
# Decisions about a name rather than a text start with this (never sent anywhere).
_SYNTHESIZED = "FETCH ALL FROM "


def _decided_text(statement: Statement) -> str:
    """The text to decide. An Execute of a portal the client made with SQL (``DECLARE``), or
    of one the gateway does not know, is decided as the ``FETCH ALL`` it amounts to, so the
    cursor's own decision and row limit apply (an unknown name is denied)."""
    if statement.phase is not Phase.EXECUTE:
        return statement.sql
    portal = statement.session.names.portals.get(statement.portal_name)
    if portal is not None and portal.bind_frame:
        return statement.sql
    return _SYNTHESIZED + '"' + statement.portal_name.replace('"', '""') + '"'


def _names_something(classification: Classification) -> bool:
    """Whether the decision depends on the session's table of names (EXECUTE, FETCH, MOVE)."""
    return any(s.executes is not None or s.fetches is not None
               for s in classification.statements)


def _remember_parse(statement: Statement, classification: Classification) -> None:
    """An allowed Parse: its decision goes on the statement's entry, for SQL ``EXECUTE``."""
    entry = statement.session.names.statements.get(statement.statement_name)
    if entry is not None and len(classification.statements) == 1:
        entry.decided = classification.statements[0]
        statement.session.names.version += 1


def _refusal(decision: Decision) -> PolicyDenied | StatementTooComplex:
    refusal = StatementTooComplex if decision.sqlstate == SQLSTATE_TOO_COMPLEX else PolicyDenied
    return refusal(decision.reason, hint=decision.hint)


def _sets_reason(decision: Decision) -> bool:
    return any(s.effect and s.effect.kind in REASON_EFFECTS for s in decision.statements)


def _plain(decision: Decision, row_limit: RowLimit | None, cursors: tuple[str, ...]) -> bool:
    """Nothing of the decision is worked out per statement: it can be reused as it is."""
    return (row_limit is None and not cursors and not decision.phi_tables
            and decision.max_rows is None and decision.max_bytes is None
            and not _sets_reason(decision))


def _remember_plain(state: _SessionState, decided: _Decided, read_only: bool) -> None:
    if len(state.plain) >= MAX_SESSION_DECISIONS:
        state.plain.clear()
    state.plain[id(decided)] = (decided, state.volatility.current, state.views, read_only)


def _fetched_cursors(statements: Iterable[Classified]) -> tuple[str, ...]:
    return tuple(s.fetches for s in statements if s.fetches is not None)


def _without_reason_settings(statement: Statement, decision: Decision) -> str | None:
    """The query text with ``SET phigate.reason`` statements cut out; None if there are none."""
    if statement.phase is not Phase.SIMPLE:
        return None
    if not _sets_reason(decision):
        return None
    # Cached classifications may carry another query's text: cut from this query's own parse.
    exact = classify(statement.sql).statements
    return ";\n".join(s.text for s in exact
                      if not (s.effect and s.effect.kind in REASON_EFFECTS))


def _no_grants(identity: str) -> Mapping[str, str]:
    return {}


def _journal_fields(decision: Decision, grants: Mapping[str, str]) -> dict[str, object]:
    fields: dict[str, object] = {
        "decision": decision.verdict, "rules": list(decision.rules), "reason": decision.reason,
        "classes": list(decision.classes), "tables": list(decision.tables),
        "phi_tables": list(decision.phi_tables),
    }
    used = sorted(grants[rule] for rule in decision.rules if rule in grants)
    if used and decision.allowed:
        fields["grants"] = used  # the access grants this statement ran under
    if decision.would_deny:
        fields["dry_run"] = True
    if decision.bulk_export:
        fields["bulk_export"] = True
    if decision.dangerous:
        fields["dangerous"] = True
    if decision.alert:
        fields["alert"] = True
    if decision.max_rows is not None:
        fields["max_rows"] = decision.max_rows
    if decision.row_weight > 1:
        fields["row_weight"] = decision.row_weight
    if decision.max_bytes is not None:
        fields["max_bytes"] = decision.max_bytes
        if decision.max_bytes_derived:
            fields["max_bytes_derived"] = True
    if decision.export_via:
        fields["export_via"] = list(decision.export_via)
    return fields


def _rows_text(decision: Decision) -> str:
    if decision.row_weight > 1:
        return (f"{decision.max_rows} rows: each row carries {decision.row_weight} rows of "
                "PHI tables")
    return str(decision.max_rows)


def _bytes_text(decision: Decision) -> str:
    if decision.max_bytes is None:
        return "none"
    derived = ", derived from max_rows" if decision.max_bytes_derived else ""
    return f"{decision.max_bytes} bytes{derived}"
