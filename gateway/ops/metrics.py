"""The gateway's Prometheus metrics: its own registry, the hooks that feed it, the journal's.

Owns every metric PHIGate exports (names under ``phigate_``) and keeps their
label values bounded: databases and identities only as configured (anything
else is ``other``), statement classes from the policy model, rule and sink
names from the config; never SQL text or other client-chosen strings.
Identities appear only with ``metrics: {per_user: true}``.

Fed by :class:`MetricsHook` (after the journal in the hook chain), by the
alert dispatcher (through the :class:`~gateway.alerts.dispatcher.AlertCounters`
methods) and, at scrape time, by :class:`JournalCollector`. Served by
``gateway/ops/health.py``. Everything here is best effort: a failure is logged and
the statement carries on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from importlib import metadata
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from policies.model import CLASSES

from ..archive.metrics import ArchiveCollector
from ..journal import Journal
from ..journal.hook import POLICY_TAG
from ..journal.segments import list_segments
from ..journal.writer import BATCH_SIZE_BOUNDS
from ..proxy.hooks import (
    AuthEvent,
    Hook,
    Outcome,
    Phase,
    SessionInfo,
    SessionSummary,
    Statement,
    Verdict,
)
from ..recording.events import JOURNAL_FIELD as RECORDING_ANNOTATION
from ..settings.config import FALLBACK_DATABASE, Settings

if TYPE_CHECKING:
    from ..archive.uploader import Archiver
from .fastmetrics import FastCollector, FastCounter, FastHistogram

log = logging.getLogger("phigate.metrics")

OTHER = "other"  # the label value for anything not in the configuration
# Histogram buckets (seconds). The gateway adds well under a millisecond when the journal
# keeps up; statements run from microseconds to minutes; fdatasync is tens of microseconds
# to milliseconds on a healthy disk.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0)
DURATION_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0,
                    300.0)
APPEND_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
                  1.0)
# Refusals because evidence could not be written (journal full / I/O, recording I/O).
JOURNAL_REFUSALS = frozenset({"53100", "58030"})


class Metrics:
    """The registry and its instruments; label values go through the ``*_label`` methods."""

    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.per_user = bool(settings.metrics and settings.metrics.per_user)
        self._databases: frozenset[str] = frozenset()
        self._users: frozenset[str] = frozenset()
        who = ["identity"] if self.per_user else []
        r = self.registry
        self.sessions_active = Gauge("phigate_sessions_active", "Sessions now relaying.",
                                     ["database"], registry=r)
        self.sessions = Counter("phigate_sessions", "Sessions started.", ["database"],
                                registry=r)
        self.auth = Counter("phigate_auth_attempts", "Client login attempts by result.",
                            ["result", *who], registry=r)
        self.upstream_errors = Counter("phigate_upstream_connect_errors", "Failed connections "
                                       "to an upstream database.", ["database"], registry=r)
        self.upstream_up = Gauge("phigate_upstream_up", "1 if the readiness probe reached the "
                                 "upstream's port.", ["database"], registry=r)
        self.ready = Gauge("phigate_ready", "1 if /readyz last answered ready.", registry=r)
        self.recording_bytes = Counter("phigate_recording_bytes", "Bytes of session "
                                       "recordings, counted as each session ends.", registry=r)
        self.alerts = Counter("phigate_alerts", "Alerts fired, by rule.", ["rule"], registry=r)
        self.alerts_suppressed = Counter("phigate_alerts_suppressed", "Alerts held back by "
                                         "the rule's dedupe window.", ["rule"], registry=r)
        self.alerts_sent = Counter("phigate_alerts_sent", "Alerts delivered, by sink.",
                                   ["sink"], registry=r)
        self.alerts_failed = Counter("phigate_alerts_failed", "Alerts not delivered after "
                                     "every retry, by sink.", ["sink"], registry=r)
        self.alerts_dropped = Counter("phigate_alerts_dropped", "Alerts dropped because the "
                                      "sink's queue was full.", ["sink"], registry=r)
        Info("phigate_build", "PHIGate version.", registry=r).info({"version": _version()})
        # Touched by every statement: lock-free instruments (see gateway/ops/fastmetrics.py).
        self.statements = FastCounter("phigate_statements", "Statements by class and decision.",
                                      ["class", "decision", *who])
        self.denials = FastCounter("phigate_denials", "Policy denials by the rule that denied.",
                                   ["rule"])
        self.rows = FastCounter("phigate_rows_returned", "Result rows sent to clients.",
                                ["database", *who])
        self.bytes = FastCounter("phigate_bytes_returned", "Result bytes (DataRow/CopyData) "
                                 "sent to clients.", ["database", *who])
        self.row_limit_cuts = FastCounter("phigate_row_limit_cuts", "Results cut by max_rows "
                                          "or the PHI row budget.", ["database"])
        self.gateway_latency = FastHistogram(
            "phigate_gateway_latency_seconds", "Time from receiving a statement to "
            "forwarding it (policy decision and journal write).", LATENCY_BUCKETS)
        self.statement_duration = FastHistogram(
            "phigate_statement_duration_seconds", "Time from forwarding a statement to its "
            "complete result.", DURATION_BUCKETS)
        self.journal_append = FastHistogram(
            "phigate_journal_append_seconds", "Time for a statement's journal entry to be "
            "durable (group commit included).", APPEND_BUCKETS)
        r.register(FastCollector(self.statements, self.denials, self.rows, self.bytes,
                                 self.row_limit_cuts, self.gateway_latency,
                                 self.statement_duration, self.journal_append))
        self.configure(settings)

    def configure(self, settings: Settings) -> None:
        """Adopt the configured names (start-up and reload); zero series for known ones."""
        self._databases = frozenset(settings.databases)
        self._users = frozenset(settings.users)
        for database in self._databases:
            self.sessions.labels(database)
            self.sessions_active.labels(database)
        if not self.per_user:
            for result in ("success", "failure"):
                self.auth.labels(result)
        alerts = settings.alerts
        for rule in alerts.rules if alerts else ():
            self.alerts.labels(rule.name)
        for sink in alerts.sinks if alerts else ():
            for family in (self.alerts_sent, self.alerts_failed, self.alerts_dropped):
                family.labels(sink)

    def database_label(self, name: str) -> str:
        if name in self._databases:
            return name
        return FALLBACK_DATABASE if FALLBACK_DATABASE in self._databases else OTHER

    def who(self, identity: str) -> tuple[str, ...]:
        """The identity label values to append, if per-user metrics are on."""
        if not self.per_user:
            return ()
        return (identity if identity in self._users else OTHER,)

    def render(self) -> bytes:
        """The text exposition; blocking (the journal collector stats files): run off-loop."""
        return generate_latest(self.registry)

    def watch_journal(self, journal: Journal) -> None:
        self.registry.register(JournalCollector(journal))
        journal.observe_appends(self.journal_append.observe)

    def watch_archive(self, archiver: Archiver) -> None:
        self.registry.register(ArchiveCollector(archiver))

    def upstream_connect_failed(self, database: str) -> None:
        self.upstream_errors.labels(self.database_label(database)).inc()

    # -- AlertCounters (gateway.alerts.dispatcher) ------------------------------------------

    def alert_fired(self, rule: str) -> None:
        self.alerts.labels(rule).inc()

    def alert_suppressed(self, rule: str) -> None:
        self.alerts_suppressed.labels(rule).inc()

    def alert_sent(self, sink: str) -> None:
        self.alerts_sent.labels(sink).inc()

    def alert_failed(self, sink: str) -> None:
        self.alerts_failed.labels(sink).inc()

    def alert_dropped(self, sink: str) -> None:
        self.alerts_dropped.labels(sink).inc()


def class_label(classes: object) -> str:
    """One statement class; ``multiple`` for a query string of several kinds."""
    if not isinstance(classes, list | tuple) or not classes:
        return "none"
    if len(classes) > 1:
        return "multiple"
    return classes[0] if classes[0] in CLASSES else OTHER


def decision_label(statement: Statement, policy: dict[str, Any]) -> str:
    refusal = statement.verdict.refusal
    if refusal is None:
        return "dry_run_deny" if policy.get("dry_run") else "allow"
    if refusal.sqlstate == "42501":
        return "deny"
    if refusal.sqlstate == "54000":
        return "row_limit"
    return "io_error" if refusal.sqlstate in JOURNAL_REFUSALS else "error"


class MetricsHook(Hook):
    """Counts sessions, logins, statements and results; after the journal in the chain.

    A statement is counted once, when its outcome is in (its decision, rows, bytes and
    timings together); only a refused Parse, which gets no outcome, is counted as it is
    decided. The label values a session's statements share are worked out at its start.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # session id → (database label, identity labels); redone when the config changes
        self._labels: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._sessions: dict[str, SessionInfo] = {}

    async def before_statement(self, statement: Statement) -> Verdict | None:
        self.before_statement_now(statement)
        return None

    def before_statement_now(self, statement: Statement) -> None:
        if statement.phase is Phase.PARSE and statement.verdict.refusal is not None:
            try:  # a refused Parse has no outcome: count it now
                self._statement(statement, self._session_labels(statement.session)[1])
            except Exception:  # metrics never refuse a statement
                log.exception("metrics failed for a statement")

    def _session_labels(self, session: SessionInfo) -> tuple[str, tuple[str, ...]]:
        labels = self._labels.get(session.session_id)
        if labels is None:
            m = self.metrics
            labels = (m.database_label(session.database), m.who(session.identity))
        return labels

    def _statement(self, statement: Statement, who: tuple[str, ...]) -> None:
        m = self.metrics
        policy = statement.tags.get(POLICY_TAG)
        fields: dict[str, Any] = policy if isinstance(policy, dict) else {}
        decision = decision_label(statement, fields)
        m.statements.inc((class_label(fields.get("classes")), decision, *who))
        if decision == "deny":
            for rule in fields.get("rules", ()):
                m.denials.inc((str(rule),))

    def after_statement(self, statement: Statement, outcome: Outcome) -> None:
        m = self.metrics
        database, who = self._session_labels(statement.session)
        self._statement(statement, who)
        labels = (database, *who) if who else (database,)
        if outcome.rows:
            m.rows.inc(labels, outcome.rows)
        if outcome.bytes_to_client:
            m.bytes.inc(labels, outcome.bytes_to_client)
        if outcome.row_limit_hit:
            m.row_limit_cuts.inc((database,))
        if not outcome.refused:
            m.statement_duration.observe(outcome.duration_s)
            m.gateway_latency.observe(outcome.gateway_latency_s)

    def authenticated(self, event: AuthEvent) -> None:
        m = self.metrics
        m.auth.labels("success" if event.success else "failure", *m.who(event.user)).inc()

    async def session_started(self, session: SessionInfo) -> None:
        try:
            database = self.metrics.database_label(session.database)
            self.metrics.sessions.labels(database).inc()
            self.metrics.sessions_active.labels(database).inc()
            self._sessions[session.session_id] = session
            self._labels[session.session_id] = (database, self.metrics.who(session.identity))
        except Exception:  # a raising session_started would refuse the session
            log.exception("metrics failed at session start")

    def session_ended(self, session: SessionInfo, summary: SessionSummary) -> None:
        self._sessions.pop(session.session_id, None)
        self._labels.pop(session.session_id, None)
        self.metrics.sessions_active.labels(self.metrics.database_label(session.database)).dec()
        # Teardown runs in reverse chain order, so the recorder (before us in the chain)
        # leaves its annotation after this returns: read it once the whole teardown is done.
        asyncio.get_running_loop().call_soon(self._recorded, summary)

    def _recorded(self, summary: SessionSummary) -> None:
        recording = summary.annotations.get(RECORDING_ANNOTATION)
        size = recording.get("bytes") if isinstance(recording, dict) else None
        if isinstance(size, int) and size > 0:
            self.metrics.recording_bytes.inc(size)

    def upstream_failed(self, database: str) -> None:
        """A session's upstream connection failed (to be called by the hook chain)."""
        self.metrics.upstream_connect_failed(database)

    def config_loaded(self, settings: Settings) -> None:
        self.metrics.configure(settings)
        m = self.metrics
        self._labels = {sid: (m.database_label(s.database), m.who(s.identity))
                        for sid, s in self._sessions.items()}


class JournalCollector:
    """The journal's counters and checkpoint state, read when Prometheus scrapes."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def collect(self) -> Iterator[Metric]:
        journal = self.journal
        stats = journal.stats
        checkpoint_seq, checkpoint_at = journal.checkpoint_info
        yield _counter("phigate_journal_entries", "Journal entries written since start.",
                       stats.entries)
        yield _counter("phigate_journal_batches", "Group-commit batches written since start "
                       "(entries / batches = mean batch size).", stats.batches)
        if stats.batch_sizes:
            yield _batch_histogram(stats.batch_sizes, stats.entries)
        yield _gauge("phigate_journal_seq", "Seq of the last journal entry.", stats.seq)
        yield _gauge("phigate_journal_writable", "1 while the journal accepts entries.",
                     1.0 if stats.writable else 0.0)
        yield _gauge("phigate_journal_last_checkpoint_seq", "Seq of the last signed "
                     "checkpoint.", checkpoint_seq)
        yield _gauge("phigate_journal_last_checkpoint_age_seconds", "Seconds since the last "
                     "signed checkpoint.", time.monotonic() - checkpoint_at)
        yield _gauge("phigate_journal_bytes", "Bytes of journal segments on disk.",
                     _segment_bytes(journal))


def _batch_histogram(counts: tuple[int, ...], entries: int) -> Metric:
    """Entries per group-commit batch (one fdatasync each), cumulative as Prometheus wants."""
    buckets, running = [], 0
    for bound, count in zip((*BATCH_SIZE_BOUNDS, float("inf")), counts, strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else str(bound), running))
    return HistogramMetricFamily("phigate_journal_batch_size", "Journal entries per "
                                 "group-commit batch.", buckets=buckets, sum_value=entries)


def _counter(name: str, documentation: str, value: float) -> Metric:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> Metric:
    return GaugeMetricFamily(name, documentation, value=value)


def _segment_bytes(journal: Journal) -> int:
    total = 0
    try:
        for segment in list_segments(journal.settings.dir):
            total += os.stat(segment.path).st_size
    except OSError as e:  # a segment pruned mid-scrape, or the volume gone: report what we saw
        log.debug("journal size incomplete: %s", e)
    return total


def _version() -> str:
    try:
        return metadata.version("phigate")
    except metadata.PackageNotFoundError:
        return "unknown"
