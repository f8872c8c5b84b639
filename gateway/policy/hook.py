"""The policy hook: every statement is decided before it reaches the database.

First in the hook chain, so the journal records each decision with the
statement. Owns what the pure engine cannot: per-session state (``session_state.py``: reason,
its decisions on the session's prepared statements and portals, kept with them in
``SessionInfo.names``: one namespace for SQL and protocol), the per-identity PHI-row budget,
the upstream catalog (``catalog_changes.py``: one shared per database, read again when it may
have changed), the clock, and reloading policy files on SIGHUP (a bad file keeps the old
policy).

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
* Every statement of a database waits while its catalog is being read again. A statement
  naming a relation the catalog never listed waits for one more read first (made directly on
  the database). While the session's own DDL is in flight or not yet committed, and after
  DDL within one query string, every relation read counts as reading every PHI table
  (``policies.views.Unsettled``); the journal's ``catalog`` field says why.
* Catalog reads that fail refuse what needs them: a session whose view dependencies
  cannot be read does not start, a call whose function cannot be looked up is denied, a
  relation that cannot be looked up is denied.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from policies.budget import PhiBudget
from policies.catalog_effects import any_changes_catalog, changes_catalog
from policies.classify import classify
from policies.context import RequestContext
from policies.engine import Engine
from policies.fastpath import call_sql, classify_call
from policies.functions import FunctionCatalog
from policies.loader import PolicyError, load_policies
from policies.model import SQLSTATE_TOO_COMPLEX, Decision
from policies.readonly import changes_nothing
from policies.statement import Classification
from policies.statement import Statement as Classified
from policies.steps import DEFAULT_MAX_STEPS
from policies.views import CATALOG_CHANGING, EARLIER_IN_QUERY, READS_NOTHING, Unsettled

from ..clock import Clock
from ..errors import ConfigError, PolicyDenied, StatementTooComplex, SyntaxRejected
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
from ..settings.config import DatabaseSettings, Settings
from .catalog import Dependencies
from .catalog_changes import Catalogs
from .journal_fields import journal_fields
from .limits import row_limit
from .reuse import Reuse, made_on, remember, reusable
from .session_effects import apply_effects
from .session_state import NOT_LISTED, Decided, SessionState

log = logging.getLogger("phigate.policy")

DECISION_TAG = "decision"
CURSORS_TAG = "fetches"  # cursors a statement FETCHes from, to count rows across FETCHes
UNPROVEN_TAG = "policy_unproven"  # counted in SessionState.unproven_in_flight until done
CHANGES_TAG = "policy_catalog_change"  # counted in SessionState.changes_in_flight until done
REASON_EFFECTS = frozenset({"set_reason", "reset_reason"})
MAX_LOOKUPS = 5  # catalog reads one statement may wait for before it is denied
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
        self._catalogs = Catalogs(settings)
        self._sessions: dict[str, SessionState] = {}
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
        self._catalogs.configure(settings)
        self._generation += 1  # decisions cached by sessions were made on the old policies
        log.info("policies loaded", extra={"files": [str(p) for p in settings.policy_files]})

    def on_catalog_change(self, listener: Callable[[DatabaseSettings, str], None]) -> None:
        """``listener(db, dbname)`` is called whenever a database's catalog may have changed
        (``Catalogs.subscribe``); for other wings' caches of the catalog."""
        self._catalogs.subscribe(listener)

    def catalog_unsettled(self, session_id: str) -> str | None:
        """Why the catalog cannot tell what the session's relations mean now (its DDL is in
        flight or not committed), or None."""
        state = self._sessions.get(session_id)
        unsettled = state.unsettled if state is not None else None
        return unsettled.why if unsettled is not None else None

    async def session_started(self, session: SessionInfo) -> None:
        self._sessions[session.session_id] = await self._catalogs.open(session)

    def session_ended(self, session: SessionInfo, summary: SessionSummary) -> None:
        state = self._sessions.pop(session.session_id, None)
        if state is not None:
            self._catalogs.close(state)

    # ---------------------------------------------------------------- deciding

    def _context(self, state: SessionState, now: dt.datetime, grants: frozenset[str], *,
                 names: bool = False, views: Dependencies | None = None) -> RequestContext:
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
            view_dependencies=state.views if views is None else views,
            relation_homes=state.catalog.homes,
            functions=state.volatility.functions,
            prepared=prepared,  # type: ignore[arg-type]  # the hook stores only Classified
            cursors=cursors, grants=grants)  # type: ignore[arg-type]

    def before_statement_now(self, statement: Statement) -> Verdict | None | MustAwait:
        if statement.phase is Phase.FUNCTION:
            return MUST_AWAIT  # the function's OID is looked up in the upstream catalog
        state = self._sessions.get(statement.session.session_id)
        if state is None:
            raise PolicyDenied("phigate: session unknown to the policy engine")
        if state.catalog.refreshing is not None:
            return MUST_AWAIT  # decided on the old catalog, a view just made over PHI is none
        if statement.verdict.refusal is not None:
            return None  # refused before us (text the encoding cannot read): nothing to decide
        text = _decided_text(statement)
        reuse = state.reuse.get(text)
        if reuse is not None and self._reusable(state, statement, reuse):
            return self._reused(state, statement, reuse)
        return self._decide_statement(state, statement, text)

    async def before_statement(self, statement: Statement) -> Verdict | None:
        state = self._sessions.get(statement.session.session_id)
        if state is None:
            raise PolicyDenied("phigate: session unknown to the policy engine")
        if statement.phase is Phase.FUNCTION:
            await state.catalog.settled()
            if statement.verdict.refusal is not None:
                return None
            return await self._function_call(state, statement)
        for _ in range(MAX_LOOKUPS):
            await state.catalog.settled()  # it logs its own failure; shared, not cancelled
            verdict = self.before_statement_now(statement)
            if verdict is not MUST_AWAIT:
                return verdict  # type: ignore[return-value]
            unseen = state.catalog.unseen(_unlisted(state, self.engine.classify(
                _decided_text(statement), standard_strings=statement.standard_strings)))
            if unseen:
                await self._catalogs.look_for(state, unseen)
        raise PolicyDenied("phigate: the upstream catalog kept changing while this statement "
                           "was decided; denied", hint="try again")

    def _reusable(self, state: SessionState, statement: Statement, reuse: Reuse) -> bool:
        return (statement.standard_strings and self.grants is _no_grants
                and reusable(reuse, seconds=self._clock.seconds(), generation=self._generation,
                             reason=state.reason, views=state.views,
                             volatility=state.volatility))

    @staticmethod
    def _reused(state: SessionState, statement: Statement, reuse: Reuse) -> None:
        """What the slow path does for a plain allowed decision, from its Reuse."""
        decided = reuse.decided
        statement.tags[DECISION_TAG] = decided[0]
        statement.tags[POLICY_TAG] = decided[1]
        if statement.phase is Phase.PARSE:
            state.parsed[statement.statement_name] = (statement.sql, decided, time.monotonic(),
                                                      None, state.views)
            _remember_parse(statement, reuse.classification)
            return
        PolicyHook._proved(state, statement, reuse.read_only)
        statement.tags[CURSORS_TAG] = ()

    def _decide_statement(self, state: SessionState, statement: Statement, text: str
                          ) -> Verdict | None | MustAwait:
        classification = self.engine.classify(text, standard_strings=statement.standard_strings)
        reuse = state.shapes.get(id(classification))
        if (reuse is not None and reuse.classification is classification
                and self._reusable(state, statement, reuse)):
            return self._reused(state, statement, reuse)  # a text of the same shape
        views = state.views
        unlisted = None if isinstance(views, Unsettled) else _unlisted(state, classification)
        if unlisted:
            if state.catalog.unseen(unlisted):
                return MUST_AWAIT  # a relation the catalog never listed: look for it first
            if not statement.idle_before:  # still missing: maybe made by this transaction
                views = Unsettled(views, NOT_LISTED)
        now = self._clock.now()
        parsed = self._parsed_decision(state, statement, views)
        decided = parsed or self._decide(state, classification, now, views)
        decision, fields = decided
        # Decided at the Parse, maybe in an earlier minute: not for the fast path.
        fresh = parsed is None and not isinstance(views, Unsettled)
        if statement.phase is Phase.PARSE:
            state.parsed[statement.statement_name] = (
                statement.sql, decided, time.monotonic(),
                state.info.names.version if _names_something(classification) else None, views)
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
                    classification.statements, state.volatility.current, views), now)
            return None
        if any_changes_catalog(decision.classes, decision.statements,
                               state.volatility.functions):
            statement.tags[CHANGES_TAG] = True
            self._catalogs.forwarded(state)
        plain = state.plain.get(id(decided))
        if (plain is not None and plain[0] is decided and plain[1] is state.volatility.current
                and plain[2] is views):
            self._proved(state, statement, plain[3])
            statement.tags[CURSORS_TAG] = ()
            if fresh:
                self._may_reuse(state, statement, text, classification, decided, plain[3], now)
            return None
        self._proved(state, statement, state.unproven_in_flight == 0 and changes_nothing(
            classification.statements, state.volatility.current, views))
        cursors = _fetched_cursors(classification.statements)
        statement.tags[CURSORS_TAG] = cursors
        limit = row_limit(state, decision, cursors, now, self._budget, self._byte_budget)
        if limit is not None and limit.max_rows <= 0:
            raise limit.error
        rewrite = _without_reason_settings(statement, decision)
        if rewrite is None:
            if _plain(decision, limit, cursors):
                read_only = statement.read_only or changes_nothing(
                    classification.statements, state.volatility.current, views)
                _remember_plain(state, decided, read_only, views)
                if fresh:
                    self._may_reuse(state, statement, text, classification, decided, read_only,
                                    now)
            return Verdict(row_limit=limit) if limit else None
        return Verdict(row_limit=limit, rewrite_sql=rewrite, local_tag="SET")

    def _may_reuse(self, state: SessionState, statement: Statement, text: str,
                   classification: Classification, decided: Decided, read_only: bool,
                   now: dt.datetime) -> None:
        """Keep a plain allowed decision for the fast path, unless it depends on what moves
        per statement (names, grants), on how the text was read, or changes the catalog."""
        if (not statement.standard_strings or self.grants is not _no_grants
                or "grants" in decided[1] or _names_something(classification)
                or not CATALOG_CHANGING.isdisjoint(decided[0].classes)):
            return
        remember(state.reuse, state.shapes, text, made_on(
            classification, decided, read_only, seconds=now.timestamp(),
            generation=self._generation, reason=state.reason, views=state.views,
            volatility=state.volatility))

    @staticmethod
    def _proved(state: SessionState, statement: Statement, changes_nothing: bool) -> None:
        """Read-only if proved so and nothing unproven is in flight (it may change what the
        statement's functions do); else counted until it completes."""
        if changes_nothing and state.unproven_in_flight == 0:
            statement.read_only = True
        else:
            state.unproven_in_flight += 1
            statement.tags[UNPROVEN_TAG] = True

    async def _function_call(self, state: SessionState, statement: Statement
                             ) -> Verdict | None:
        """A fast-path call, decided as the SQL call of the function its OID names."""
        call = statement.function_call
        assert call is not None  # the relay sets it for every FUNCTION statement
        function = await self._catalogs.function(state, call.function_oid)
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
        statement.tags[POLICY_TAG] = {**journal_fields(decision, held),
                                      "function": f"{function.schema}.{function.name}",
                                      "function_oid": call.function_oid}
        if not decision.allowed:
            raise _refusal(decision)
        state.unproven_in_flight += 1  # a call is never proved read-only: it runs write-ahead
        statement.tags[UNPROVEN_TAG] = True
        limit = row_limit(state, decision, (), now, self._budget, self._byte_budget)
        if limit is not None and limit.max_rows <= 0:
            raise limit.error
        return Verdict(row_limit=limit) if limit else None

    def _decide(self, state: SessionState, classification: Classification,
                now: dt.datetime, views: Dependencies) -> Decided:
        """Decide, reusing this session's earlier decision on the same classification while
        nothing it depends on moved: the minute (time windows), the reason, the session's
        prepared statements and cursors, and the loaded policies. Decisions touching PHI are
        never reused, since the PHI-row budget can change them at any moment."""
        held = self.grants(state.info.identity)  # re-read every statement: revocable
        grants = frozenset(held)
        names = _names_something(classification)
        # Catalogs compared by identity (equal contents are not the same facts: Unsettled);
        # the objects themselves keep their ids from being reused meanwhile.
        key = (int(now.timestamp() // 60), state.reason,
               state.info.names.version if names else 0, self._generation, grants,
               id(views), id(state.volatility.functions), views, state.volatility.functions,
               id(state.catalog.homes), state.catalog.homes)
        cached = state.decisions.get(id(classification))
        if cached is not None and cached[0] is classification and cached[1] == key:
            return cached[2]
        decision = self.engine.decide_classified(
            self._context(state, now, grants, names=names, views=views), classification)
        fields = journal_fields(decision, held)
        why = _unsettled_by(views, classification, state.volatility.functions)
        if why is not None and decision.phi_tables:
            fields["catalog"] = why  # the engine's reason says what it means
        decided = (decision, fields)
        if not decision.phi_tables:
            if len(state.decisions) >= MAX_SESSION_DECISIONS:
                state.decisions.clear()
            state.decisions[id(classification)] = (classification, key, decided)
        return decided

    @staticmethod
    def _parsed_decision(state: SessionState, statement: Statement, views: Dependencies
                         ) -> Decided | None:
        """An Execute right after its Parse reuses the Parse's decision (same batch)."""
        if statement.phase is not Phase.EXECUTE:
            return None
        parsed = state.parsed.get(statement.statement_name)
        if parsed is None:
            return None
        sql, decision, decided_at, version, decided_on = parsed
        if sql != statement.sql or time.monotonic() - decided_at > REUSE_PARSE_DECISION_S:
            return None
        if decided_on is not views:  # the catalog was read again (or DDL is in flight)
            return None
        if "grants" in decision[1]:  # decided under a grant: ask again, it may be revoked
            return None
        if version is not None and version != statement.session.names.version:
            return None
        return decision

    # ---------------------------------------------------------------- afterwards

    def after_statement(self, statement: Statement, outcome: Outcome) -> None:
        decision = statement.tags.get(DECISION_TAG)
        state = self._sessions.get(statement.session.session_id)
        if state is not None and statement.tags.pop(UNPROVEN_TAG, False):
            state.unproven_in_flight -= 1
        if state is not None and statement.tags.pop(CHANGES_TAG, False):
            self._catalogs.completed(state, ran=not outcome.refused)
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
            apply_effects(state, decision)

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


def _remember_plain(state: SessionState, decided: Decided, read_only: bool,
                    views: Dependencies) -> None:
    if len(state.plain) >= MAX_SESSION_DECISIONS:
        state.plain.clear()
    state.plain[id(decided)] = (decided, state.volatility.current, views, read_only)


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


def _unsettled_by(views: Dependencies, classification: Classification,
                  functions: FunctionCatalog) -> str | None:
    """Why the catalog could not vouch for (part of) the decision, if it could not: the
    session's state, or DDL before the end of the query string (the engine then decides what
    follows it on ``Unsettled``)."""
    if isinstance(views, Unsettled):
        return views.why
    statements = classification.statements
    if len(statements) > 1 and any(changes_catalog(s, functions) for s in statements[:-1]):
        return EARLIER_IN_QUERY
    return None


def _unlisted(state: SessionState, classification: Classification) -> list[str]:
    """Relations the statement reads that the database's catalog does not list."""
    return state.catalog.unlisted(t for s in classification.statements
                                  if not READS_NOTHING.issuperset(s.classes) for t in s.tables)
