"""The alert hook: turns logins, sessions and statements into events for the rules engine.

Last in the hook chain (after the journal), so a statement's event carries the
policy decision and any refusal. Best effort by contract: nothing here raises
into the relay or awaits anything; alerts go to the dispatcher's queues.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..clock import Clock
from ..errors import StatementRefused
from ..journal.hook import POLICY_TAG, journal_seq
from ..proxy.hooks import AuthEvent, Hook, Outcome, Phase, SessionInfo, Statement, Verdict
from ..settings.config import Settings
from .dispatcher import Dispatcher
from .engine import RulesEngine
from .model import Event, EventKind
from .settings import AlertRule

log = logging.getLogger("phigate.alerts")



class AlertHook(Hook):
    """Feeds the rules engine from the hook chain and hands its alerts to the dispatcher."""

    def __init__(self, rules: tuple[AlertRule, ...], dispatcher: Dispatcher, clock: Clock,
                 *, on_suppressed: Callable[[str], None] = lambda rule: None) -> None:
        self.dispatcher = dispatcher
        self._clock = clock
        self._on_suppressed = on_suppressed
        self.engine = self._engine(rules)

    def _engine(self, rules: tuple[AlertRule, ...]) -> RulesEngine:
        return RulesEngine(rules, self._clock.now, on_suppressed=self._on_suppressed)

    def observe(self, event: Event) -> None:
        """Run the rules on ``event`` and fire what they find; never raises."""
        try:
            for alert in self.engine.observe(event):
                self.dispatcher.fire(alert)
        except Exception:
            log.exception("alert rules failed on a %s event", event.kind.value)

    def authenticated(self, event: AuthEvent) -> None:
        if event.success or not self.engine.wants(EventKind.LOGIN_FAILED):
            return
        self.observe(Event(EventKind.LOGIN_FAILED, identity=event.user,
                           client_ip=event.client_ip, database=event.database))

    async def session_started(self, session: SessionInfo) -> None:
        if self.engine.wants(EventKind.SESSION_STARTED):
            self.observe(Event(EventKind.SESSION_STARTED, identity=session.identity,
                               client_ip=session.client_ip, database=session.database,
                               session=session.session_id))

    async def before_statement(self, statement: Statement) -> Verdict | None:
        self.before_statement_now(statement)
        return None

    def before_statement_now(self, statement: Statement) -> None:
        refusal = statement.verdict.refusal
        if statement.phase is Phase.PARSE and refusal is None:
            return None  # nothing runs at Parse; its Execute is decided again
        policy = statement.tags.get(POLICY_TAG)
        fields = policy if isinstance(policy, dict) else {}
        # Every statement condition needs a refusal, a break-glass rule or PHI tables: the
        # plain allowed statement, nearly all of them, stops here without building an event.
        if refusal is None and not fields.get("alert") and not fields.get("phi_tables"):
            return None
        if not self.engine.wants(EventKind.STATEMENT):
            return None
        durable = statement.durable
        if durable is not None and not durable.done():
            # A read running while its entry is synced: alert once the entry (its seq) is
            # durable; if it never is, nothing was disclosed.
            durable.add_done_callback(
                lambda future: None if future.cancelled() or future.exception() is not None
                else self._statement(statement, fields, refusal))
            return None
        self._statement(statement, fields, refusal)
        return None

    def _statement(self, statement: Statement, fields: dict[str, Any],
                   refusal: StatementRefused | None) -> None:
        try:
            event = _statement_event(statement, fields, refusal)
        except Exception:  # malformed tags from another hook: never refuse over an alert
            log.exception("could not read the statement's decision for alerts")
            return
        self.observe(event)

    def after_statement(self, statement: Statement, outcome: Outcome) -> None:
        if outcome.refused or not self.engine.wants(EventKind.OUTCOME):
            return
        policy = statement.tags.get(POLICY_TAG)
        phi = tuple(policy.get("phi_tables", ())) if isinstance(policy, dict) else ()
        if not outcome.row_limit_hit and not (phi and outcome.rows):
            return
        session = statement.session
        self.observe(Event(
            EventKind.OUTCOME, identity=session.identity, client_ip=session.client_ip,
            database=session.database, session=session.session_id, statement=statement.number,
            journal_seq=journal_seq(statement), phi_tables=phi, rows=outcome.rows,
            row_limit_hit=outcome.row_limit_hit,
            policy_rules=tuple(policy.get("rules", ())) if isinstance(policy, dict) else ()))

    def config_loaded(self, settings: Settings) -> None:
        rules = settings.alerts.rules if settings.alerts else ()
        sinks = dict(settings.alerts.sinks) if settings.alerts else {}
        if sinks != self.dispatcher.sink_settings:
            log.warning("alert sinks changed in the config; they take effect at the next start")
        if rules != self.engine.rules:  # unchanged rules keep their windows and dedupe state
            self.engine = self._engine(rules)
            log.info("alert rules reloaded", extra={"rules": [r.name for r in rules]})


def _statement_event(statement: Statement, fields: dict[str, Any],
                     refusal: StatementRefused | None) -> Event:
    session = statement.session
    return Event(
        EventKind.STATEMENT, identity=session.identity, client_ip=session.client_ip,
        database=session.database, session=session.session_id, statement=statement.number,
        journal_seq=journal_seq(statement), refused_sqlstate=refusal.sqlstate if refusal else None,
        message=refusal.message if refusal else None,
        policy_rules=tuple(fields.get("rules", ())),
        bulk_export=bool(fields.get("bulk_export")), break_glass=bool(fields.get("alert")),
        phi_tables=tuple(fields.get("phi_tables", ())))
