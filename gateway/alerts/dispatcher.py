"""Delivering alerts: journal entry first, then a bounded queue and a worker per sink.

:meth:`Dispatcher.fire` is synchronous and never waits: it journals the
``alert`` entry (``append_later``) and offers the alert to each of its sinks'
queues; a full queue drops the alert for that sink and counts it. One named
task per sink sends, retrying with exponential backoff; an alert that still
fails is journaled as ``alert_failed``. Driven by the AlertHook (and, at
start-up, by ``gateway/ops/monitoring.py`` when the journal cannot be opened).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from typing import Protocol

from .model import Alert
from .settings import SinkSettings
from .sinks import Sink, SinkError

log = logging.getLogger("phigate.alerts")

BACKOFF_BASE_S = 0.5  # first retry after this long, doubling each time …
BACKOFF_MAX_S = 60.0  # … up to this: a SIEM back after a minute hears about it soon
STOP_GRACE_S = 2.0  # at shutdown, queued alerts get this long to go out
DROP_LOG_EVERY = 100  # a full queue logs its first drop, then every this many

Record = Callable[[str, dict[str, object]], None]  # Journal.append_later


class AlertCounters(Protocol):
    """What the dispatcher reports for metrics (``gateway/ops/metrics.py`` implements it)."""

    def alert_fired(self, rule: str) -> None: ...

    def alert_sent(self, sink: str) -> None: ...

    def alert_failed(self, sink: str) -> None: ...

    def alert_dropped(self, sink: str) -> None: ...


class NoCounters:
    def alert_fired(self, rule: str) -> None:
        return None

    def alert_sent(self, sink: str) -> None:
        return None

    def alert_failed(self, sink: str) -> None:
        return None

    def alert_dropped(self, sink: str) -> None:
        return None


def backoff(attempt: int) -> float:
    """Delay before retry ``attempt`` (0-based), with jitter so retries do not align."""
    delay = min(BACKOFF_BASE_S * 2 ** attempt, BACKOFF_MAX_S)
    return delay * random.uniform(0.9, 1.1)


class _Lane:
    """One sink's queue and the task that empties it."""

    def __init__(self, sink: Sink, dispatcher: Dispatcher) -> None:
        self.sink = sink
        self.name = sink.settings.name
        self.queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=sink.settings.max_queue)
        self.task: asyncio.Task[None] | None = None
        self.current: Alert | None = None
        self.dropped = 0
        self._dispatcher = dispatcher

    def offer(self, alert: Alert) -> None:
        try:
            self.queue.put_nowait(alert)
        except asyncio.QueueFull:
            self.dropped += 1
            self._dispatcher.counters.alert_dropped(self.name)
            if self.dropped % DROP_LOG_EVERY == 1:
                log.error("alert queue for sink %s is full; %d alerts dropped so far",
                          self.name, self.dropped, extra={"sink": self.name})

    async def run(self) -> None:
        while True:
            alert = await self.queue.get()
            self.current = alert
            try:
                await self._deliver(alert)
            finally:
                self.current = None
                self.queue.task_done()

    async def _deliver(self, alert: Alert) -> None:
        attempts = self.sink.settings.retries + 1
        error = "not sent"
        for attempt in range(attempts):
            try:
                await self.sink.send(alert)
            except SinkError as e:
                error = e.message
                if not e.retryable:
                    break
            except Exception as e:  # a broken sink must not stop the lane
                log.exception("alert sink %s failed", self.name)
                error = f"internal error: {type(e).__name__}"
            else:
                self._dispatcher.counters.alert_sent(self.name)
                return
            if attempt + 1 < attempts:
                await asyncio.sleep(backoff(attempt))
        self._dispatcher.failed(alert, self.name, error, attempts=attempt + 1)


class Dispatcher:
    """Journals alerts and fans them out to their sinks' queues."""

    def __init__(self, sinks: Mapping[str, Sink], *, record: Record | None = None,
                 counters: AlertCounters | None = None) -> None:
        self.counters: AlertCounters = counters or NoCounters()
        self.record = record
        self._lanes = {name: _Lane(sink, self) for name, sink in sinks.items()}

    @property
    def sink_settings(self) -> dict[str, SinkSettings]:
        return {name: lane.sink.settings for name, lane in self._lanes.items()}

    def start(self) -> None:
        for lane in self._lanes.values():
            if lane.task is None:
                lane.task = asyncio.create_task(lane.run(), name=f"phigate-alerts-{lane.name}")

    def fire(self, alert: Alert) -> None:
        """Journal the alert and queue it for its sinks; never blocks."""
        self.counters.alert_fired(alert.rule)
        self._journal("alert", alert.journal_fields())
        log.info("alert %s: %s", alert.rule, alert.summary,
                    extra={"alert": alert.id, "rule": alert.rule, "subject": alert.subject})
        for name in alert.sinks:
            lane = self._lanes.get(name)
            if lane is not None:
                lane.offer(alert)

    def failed(self, alert: Alert, sink: str, error: str, *, attempts: int) -> None:
        self.counters.alert_failed(sink)
        log.error("alert %s could not be sent to %s after %d attempts: %s", alert.rule, sink,
                  attempts, error, extra={"alert": alert.id, "sink": sink})
        self._journal("alert_failed", {"alert": alert.id, "rule": alert.rule, "sink": sink,
                                       "attempts": attempts, "error": error})

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every queue is empty (True) or ``timeout_s`` passed (False)."""
        waits = [asyncio.create_task(lane.queue.join(), name=f"phigate-alerts-flush-{name}")
                 for name, lane in self._lanes.items()]
        if not waits:
            return True
        done, pending = await asyncio.wait(waits, timeout=timeout_s)
        for task in pending:
            task.cancel()
        return not pending

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Give queued alerts ``grace_s`` to go out; journal the rest as failed."""
        await self.flush(grace_s)
        for lane in self._lanes.values():
            left = [lane.current] if lane.current is not None else []
            if lane.task is not None:
                lane.task.cancel()
                await asyncio.gather(lane.task, return_exceptions=True)
                lane.task = None
            while not lane.queue.empty():
                left.append(lane.queue.get_nowait())
            for alert in left:
                self.failed(alert, lane.name, "gateway stopped before it was sent", attempts=0)
            lane.sink.close()

    def _journal(self, type: str, fields: dict[str, object]) -> None:
        if self.record is None:
            return
        try:
            self.record(type, fields)
        except Exception:  # the journal logs its own failures; an alert must still go out
            log.exception("could not journal %s entry", type)
