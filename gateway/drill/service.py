"""The drill inside ``phigate serve``: the ``drill.every`` schedule, and journaling reports.

Every report, whether the schedule ran it here or ``phigate drill`` ran it from
outside (it leaves the signed file in the report directory), is checked against
the journal key and journaled as a ``drill`` entry (file, SHA-256, pass/fail,
failed checks, the drill's seq range); a ``.journaled`` marker beside the file
holds the entry's seq so the CLI can show it. A failed drill raises the
``journal`` alert; ``phigate_drill_last_success_timestamp_seconds`` and
``phigate_drill_failures_total`` come from here. It also answers a drill's seal
request (a ``*.seal-request`` file there): it seals the active journal segment
and starts an archive pass, so the drill can see its entries archived. Started
by ``gateway/service.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..alerts.model import Event, EventKind
from ..errors import StatementRefused
from ..journal import Journal, segments
from ..journal.keys import load_private
from ..settings.config import Settings
from . import report as reports
from .evidence import SEAL_REQUEST
from .report import report_dir
from .run import run_drill
from .settings import DrillSettings

if TYPE_CHECKING:
    from ..archive.uploader import Archiver
    from ..ops.monitoring import Monitoring

log = logging.getLogger("phigate.drill")

POLL_S = 0.2  # how soon a report left by `phigate drill` is journaled
MARKER = ".journaled"


async def start_drills(settings: Settings, journal: Journal, monitoring: Monitoring,
                       archiver: Archiver | None = None) -> DrillService | None:
    """With a ``drill:`` section: journal reports, run the schedule, export, alert."""
    if settings.drill is None:
        return None
    hook = monitoring.alert_hook

    def alert(message: str) -> None:
        if hook is not None:
            hook.observe(Event(EventKind.JOURNAL_FAILED, message=message))

    service = DrillService(settings, settings.drill, journal, on_failure=alert,
                           archiver=archiver)
    if settings.metrics is not None:
        monitoring.metrics.registry.register(DrillCollector(service.stats))
    await service.start()
    return service


class DrillService:
    def __init__(self, settings: Settings, drill: DrillSettings, journal: Journal,
                 on_failure: Callable[[str], None] | None = None,
                 archiver: Archiver | None = None) -> None:
        self.settings = settings
        self.drill = drill
        self.journal = journal
        self.archiver = archiver
        self._passes: set[asyncio.Task[None]] = set()  # archive passes the drills asked for
        self.directory = report_dir(settings, drill)
        self._on_failure = on_failure
        self._tasks: list[asyncio.Task[None]] = []
        self.stats = DrillStats()

    async def start(self) -> None:
        await asyncio.to_thread(self.directory.mkdir, mode=0o700, parents=True, exist_ok=True)
        self.stats.last_success = await asyncio.to_thread(self._newest_success)
        self._tasks.append(asyncio.create_task(self._inbox(), name="phigate-drill-inbox"))
        if self.drill.every_s is not None:
            self._tasks.append(asyncio.create_task(self._schedule(),
                                                   name="phigate-drill-schedule"))

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._passes]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _schedule(self) -> None:
        assert self.drill.every_s is not None and self.settings.journal is not None
        while True:
            await asyncio.sleep(self.drill.every_s)
            try:
                result = await run_drill(self.settings, self.drill)
                key = await asyncio.to_thread(load_private, self.settings.journal.signing_key)
                data = reports.sign(result, key)
                await asyncio.to_thread(reports.write, self.directory, data, result.started)
            except Exception:  # a broken drill must not stop the next one
                log.exception("scheduled drill could not run")
                self._failed("the scheduled audit drill could not run")

    async def _inbox(self) -> None:
        while True:
            if await asyncio.to_thread(self._seal_requested):
                await self._seal()
            for path in await asyncio.to_thread(self._waiting):
                await self._journal(path)
            await asyncio.sleep(POLL_S)

    def _seal_requested(self) -> bool:
        """Take the drills' seal requests (several waiting are answered by one seal)."""
        requests = list(self.directory.glob(f"*{SEAL_REQUEST}"))
        for request in requests:
            request.unlink(missing_ok=True)
        return bool(requests)

    async def _seal(self) -> None:
        """A drill wants its entries in the archive: seal the segment, ship it now."""
        try:
            await self.journal.seal_segment()
        except StatementRefused as e:  # the drill reports the segment as not archived
            log.error("drill: the journal segment could not be sealed: %s", e.message)
            return
        if self.archiver is not None:
            task = asyncio.create_task(self._archive_pass(self.archiver),
                                       name="phigate-drill-archive-pass")
            self._passes.add(task)
            task.add_done_callback(self._passes.discard)

    async def _archive_pass(self, archiver: Archiver) -> None:
        try:
            await archiver.run_once()
        except Exception:  # the uploader's own loop retries; the drill reports the delay
            log.exception("drill: archive pass failed")

    def _waiting(self) -> list[Path]:
        return [p for p in sorted(self.directory.glob("drill-*.json"))
                if not p.with_name(p.name + MARKER).exists()]

    async def _journal(self, path: Path) -> None:
        data = await asyncio.to_thread(path.read_bytes)
        key = self.journal_public()
        try:
            body = reports.verify_report(data, key)
        except ValueError as e:
            seq = await self.journal.append("drill", {"file": path.name, "passed": False,
                                                      "error": str(e)})
            self._failed(f"drill report {path.name} is not valid: {e}")
        else:
            checks = body.get("checks")
            failed = [str(c.get("name")) for c in checks if not c.get("passed")] if isinstance(
                checks, list) else ["checks"]
            seq = await self.journal.append("drill", {
                "file": path.name, "sha256": hashlib.sha256(data).hexdigest(),
                "passed": body["passed"], "identity": body["identity"],
                "started": body["started"], "first_seq": body["first_seq"],
                "last_seq": body["last_seq"], "failed_checks": failed})
            if body["passed"]:
                self.stats.last_success = time.time()
            else:
                self._failed(f"audit drill failed: {', '.join(failed)}")
        marker = path.with_name(path.name + MARKER)
        await asyncio.to_thread(segments.atomic_write, marker,
                                json.dumps({"seq": seq}).encode(), 0o600)

    def journal_public(self) -> Ed25519PublicKey:
        assert self.settings.journal is not None
        return load_private(self.settings.journal.signing_key).public_key()

    def _newest_success(self) -> float | None:
        """After a restart: when the newest journaled report passed (for the metric)."""
        newest = None
        for marker in self.directory.glob(f"drill-*.json{MARKER}"):
            report = marker.with_name(marker.name.removesuffix(MARKER))
            try:
                body = json.loads(report.read_bytes())
            except (OSError, ValueError):
                continue
            if body.get("passed") is True:
                newest = max(newest or 0.0, _epoch(str(body.get("finished"))))
        return newest

    def _failed(self, message: str) -> None:
        self.stats.failures += 1
        log.error("%s", message)
        if self._on_failure is not None:
            self._on_failure(message)


def _epoch(stamp: str) -> float:
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


@dataclass(slots=True)
class DrillStats:
    last_success: float | None = None  # Unix time of the last passed drill
    failures: int = 0


class DrillCollector:
    def __init__(self, stats: DrillStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("phigate_drill_last_success_timestamp_seconds",
                                "When the last audit drill passed (Unix time; 0 = never).",
                                value=self.stats.last_success or 0.0)
        yield CounterMetricFamily("phigate_drill_failures", "Audit drills that failed.",
                                  value=self.stats.failures)
