"""Observability for one gateway run: metrics, the health endpoints and alerts, wired together.

``service.run_gateway`` builds a :class:`Monitoring` before it opens the journal
(so a journal that cannot be opened still raises a ``journal`` alert), asks it
for the hook chain, starts it once the gateway listens, marks it draining at
shutdown, and stops it after the sessions drained but before the journal
closes, so the last ``alert`` and ``alert_failed`` entries still land.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..alerts.dispatcher import Dispatcher
from ..alerts.engine import journal_failure_alerts
from ..alerts.hook import AlertHook
from ..alerts.model import Event, EventKind
from ..alerts.sinks import build_sink
from ..clock import Clock
from ..errors import ConfigError
from ..journal import Journal
from ..proxy.hooks import Hook
from ..settings.config import Settings
from .health import HealthServer, Readiness
from .metrics import Metrics, MetricsHook

if TYPE_CHECKING:
    from ..archive.uploader import Archiver
    from ..proxy.server import Gateway

log = logging.getLogger("phigate.monitoring")

JOURNAL_WATCH_S = 1.0  # how soon an idle gateway notices its journal broke
STARTUP_ALERT_GRACE_S = 10.0  # a gateway that cannot start waits this long for its alert


class Monitoring:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics(settings)
        alerts = settings.alerts
        sinks = {name: build_sink(sink) for name, sink in (alerts.sinks if alerts else {}).items()}
        self.dispatcher = Dispatcher(sinks, counters=self.metrics)
        self.alert_hook: AlertHook | None = None
        self.health: HealthServer | None = None
        self._readiness: Readiness | None = None
        self._watch: asyncio.Task[None] | None = None

    def chain(self, policy: Hook, journal_hook: Hook, journal: Journal, clock: Clock, *,
              others: Sequence[Hook] = ()) -> list[Hook]:
        """The hook chain: policy → journal → ``others`` (the recorder) → metrics → alerts."""
        self.dispatcher.record = journal.append_later
        hooks = [policy, journal_hook, *others]
        if self.settings.metrics is not None:
            self.metrics.watch_journal(journal)
            hooks.append(MetricsHook(self.metrics))
        alerts = self.settings.alerts
        if alerts is not None and alerts.rules:
            self.alert_hook = AlertHook(alerts.rules, self.dispatcher, clock,
                                        on_suppressed=self.metrics.alert_suppressed)
            hooks.append(self.alert_hook)
        return hooks

    async def start(self, gateway: Gateway, journal: Journal,
                    archiver: Archiver | None = None) -> None:
        """The gateway listens: start alert delivery, the journal watch and the metrics port."""
        self.dispatcher.start()
        lagging = archiver.lagging if archiver is not None else None
        if self.alert_hook is not None:
            self._watch = asyncio.create_task(
                self._watch_journal(journal, self.alert_hook, lagging),
                name="phigate-alerts-journal-watch")
        metrics = self.settings.metrics
        if metrics is None:
            return
        if archiver is not None:
            self.metrics.watch_archive(archiver)
        self._readiness = Readiness(journal, lambda: gateway.settings.databases.values(),
                                    self.metrics, archive=lagging)
        self._readiness.listening = True
        self.health = HealthServer(metrics, self.metrics, self._readiness)
        try:
            await self.health.start()
        except OSError as e:
            raise ConfigError(f"cannot listen on {metrics.host}:{metrics.port}: {e.strerror}",
                              file=str(self.settings.source), key="metrics") from e

    def draining(self) -> None:
        """Shutdown began: /readyz says so, so load balancers stop sending clients."""
        if self._readiness is not None:
            self._readiness.listening = False

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        if self.health is not None:
            await self.health.stop()
        await self.dispatcher.stop()

    async def journal_unusable(self, message: str) -> None:
        """The journal cannot be opened (tampered, locked, unwritable): alert before exiting."""
        alerts = self.settings.alerts
        if alerts is None:
            return
        fired = journal_failure_alerts(alerts.rules, message, Clock.from_environment().now)
        if not fired:
            return
        self.dispatcher.start()
        for alert in fired:
            self.dispatcher.fire(alert)
        await self.dispatcher.stop(STARTUP_ALERT_GRACE_S)

    @staticmethod
    async def _watch_journal(journal: Journal, hook: AlertHook,
                             lagging: Callable[[], str | None] | None = None) -> None:
        """Outcome entries fail silently when the gateway is idle; notice it here too,
        and an archive that fell behind (its segments are the journal's only safe copy)."""
        was_writable, was_lagging = True, False
        while True:
            await asyncio.sleep(JOURNAL_WATCH_S)
            writable = journal.writable
            if was_writable and not writable:
                hook.observe(Event(EventKind.JOURNAL_FAILED, message="the journal cannot be "
                                   "written; statements are refused until it can"))
            was_writable = writable
            behind = lagging() if lagging is not None else None
            if behind is not None and not was_lagging:
                hook.observe(Event(EventKind.JOURNAL_FAILED, message=behind))
            was_lagging = behind is not None
