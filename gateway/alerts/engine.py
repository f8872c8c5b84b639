"""The rules engine: events in, deduplicated alerts out.

Owns one condition per configured rule and the dedupe windows: an alert for a
(rule, subject) pair suppresses further alerts for that pair for the rule's
``dedupe`` time. Pure computation, no I/O and no awaiting: the
:class:`~.hook.AlertHook` calls :meth:`RulesEngine.observe` from the hot path
and hands what comes back to the dispatcher.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .conditions import MAX_SUBJECTS, Condition, build_condition
from .model import Alert, Event, EventKind, Trigger
from .settings import AlertRule


@dataclass(frozen=True, slots=True)
class _Armed:
    rule: AlertRule
    condition: Condition


class Dedupe:
    """When each (rule, subject) may alert again; bounded like the conditions' windows."""

    def __init__(self) -> None:
        self._until: dict[tuple[str, str], float] = {}

    def covered(self, rule: str, subjects: Sequence[str], now: float) -> bool:
        return any(self._until.get((rule, s), 0.0) > now for s in subjects)

    def hold(self, rule: str, subjects: Sequence[str], until: float, now: float) -> None:
        for subject in subjects:
            self._until[(rule, subject)] = until
        if len(self._until) > MAX_SUBJECTS:
            self._until = {k: v for k, v in self._until.items() if v > now}


class RulesEngine:
    """Applies the configured rules to events; returns the alerts to send."""

    def __init__(self, rules: Sequence[AlertRule], now: Callable[[], dt.datetime], *,
                 monotonic: Callable[[], float] = time.monotonic,
                 on_suppressed: Callable[[str], None] = lambda rule: None) -> None:
        self.rules = tuple(rules)
        self._now = now
        self._monotonic = monotonic
        self._dedupe = Dedupe()
        self._by_kind: dict[EventKind, list[_Armed]] = {kind: [] for kind in EventKind}
        for rule in self.rules:
            armed = _Armed(rule, build_condition(rule, now))
            for kind in armed.condition.kinds:
                self._by_kind[kind].append(armed)
        self._on_suppressed = on_suppressed  # told the rule's name for each held-back alert

    def wants(self, kind: EventKind) -> bool:
        """Whether any rule looks at this kind of event (lets the hook skip building it)."""
        return bool(self._by_kind[kind])

    def observe(self, event: Event) -> list[Alert]:
        alerts: list[Alert] = []
        armed_rules = self._by_kind[event.kind]
        if not armed_rules:
            return alerts
        now = self._monotonic()
        for armed in armed_rules:
            trigger = armed.condition.observe(event, now)
            if trigger is None:
                continue
            name = armed.rule.name
            if self._dedupe.covered(name, trigger.subjects, now):
                self._on_suppressed(name)
                continue
            self._dedupe.hold(name, trigger.subjects, now + armed.rule.dedupe_s, now)
            alerts.append(self._alert(armed.rule, trigger, event))
        return alerts

    def _alert(self, rule: AlertRule, trigger: Trigger, event: Event) -> Alert:
        return Alert(
            id=uuid.uuid4().hex, rule=rule.name, condition=rule.when,
            subject=trigger.subjects[0], summary=trigger.summary,
            time=self._now().isoformat(timespec="milliseconds"), sinks=rule.sinks,
            identity=event.identity, client_ip=event.client_ip, database=event.database,
            session=event.session, statement=event.statement, journal_seq=event.journal_seq,
            details=trigger.details)


def journal_failure_alerts(rules: Sequence[AlertRule], message: str,
                           now: Callable[[], dt.datetime]) -> list[Alert]:
    """Alerts for a journal that cannot be opened at start, when no engine runs yet."""
    engine = RulesEngine([r for r in rules if r.when == "journal"], now)
    return engine.observe(Event(EventKind.JOURNAL_FAILED, message=message))
