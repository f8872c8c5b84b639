"""Real-time alerts: rules over gateway events, delivered to sinks, always journaled.

The :class:`~.hook.AlertHook` turns hook calls (logins, sessions, decided and
finished statements) into :class:`~.model.Event` values; the
:class:`~.engine.RulesEngine` applies the configured conditions and the
per-rule-and-subject dedupe windows; the :class:`~.dispatcher.Dispatcher`
journals every alert and queues it for each sink (webhook, log, syslog) without
ever making a statement wait. ``gateway/ops/monitoring.py`` wires them together.
"""
