"""The metrics port: ``/metrics``, ``/healthz`` and ``/readyz`` over a minimal HTTP/1.1 server.

Owns the listening socket of ``metrics: host:port`` and the readiness checks.
Plain asyncio (no threads, no framework): each request is a GET or HEAD of one
path, answered and closed. ``/healthz`` answers while the process runs;
``/readyz`` is ready when the gateway listens, the journal can be written and
at least one upstream database accepts TCP connections. Started and stopped by
``gateway/ops/monitoring.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..journal import Journal
from ..settings.config import DatabaseSettings, MetricsSettings
from .metrics import Metrics

log = logging.getLogger("phigate.health")

MAX_REQUEST_HEAD = 8192  # request line and headers; scrapers send a few hundred bytes
REQUEST_TIMEOUT_S = 5.0  # a client that has not sent its request by then is dropped
UPSTREAM_TIMEOUT_S = 1.0  # TCP connect to an upstream, for readiness
UPSTREAM_CACHE_S = 5.0  # probes kube-style every few seconds must not hammer the databases
JOURNAL_CHECK_TIMEOUT_S = 2.0  # a disk that hangs this long is not ready
# With less than this free on the journal's volume the next batches may not fit.
JOURNAL_MIN_FREE_BYTES = 64 * 1024
PROBE_NAME = ".readyz-probe.tmp"  # `.*.tmp`: removed by the journal at start if left behind


@dataclass(slots=True)
class ReadyReport:
    ready: bool
    checks: dict[str, str] = field(default_factory=dict)


class Readiness:
    """Answers "should this gateway get traffic?"; upstream results are cached briefly."""

    def __init__(self, journal: Journal, databases: Callable[[], Iterable[DatabaseSettings]],
                 metrics: Metrics, *, archive: Callable[[], str | None] | None = None) -> None:
        self.journal = journal
        self._archive = archive  # why the archive is behind, or None
        self.listening = False  # set by monitoring once the gateway listens, cleared at drain
        self._databases = databases
        self._metrics = metrics
        self._upstream: tuple[float, str | None] = (-UPSTREAM_CACHE_S, None)
        self._probe_lock = asyncio.Lock()

    async def check(self) -> ReadyReport:
        journal, upstream = await asyncio.gather(self._journal(), self._upstreams())
        checks = {"listening": "ok" if self.listening else "not listening",
                  "journal": journal or "ok", "upstream": upstream or "ok"}
        archive = self._archive() if self._archive is not None else None
        if self._archive is not None:
            checks["archive"] = archive or "ok"
        ready = self.listening and journal is None and upstream is None and archive is None
        self._metrics.ready.set(1.0 if ready else 0.0)
        return ReadyReport(ready, checks)

    async def _journal(self) -> str | None:
        if not self.journal.writable:
            return "journal is not writable (statements are being refused)"
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(_journal_volume, self.journal.settings.dir),
                JOURNAL_CHECK_TIMEOUT_S)
        except TimeoutError:
            return f"journal directory did not answer within {JOURNAL_CHECK_TIMEOUT_S:g}s"

    async def _upstreams(self) -> str | None:
        async with self._probe_lock:  # concurrent probes share one round of connects
            checked_at, result = self._upstream
            if time.monotonic() - checked_at < UPSTREAM_CACHE_S:
                return result
            databases = list(self._databases())
            reachable = await asyncio.gather(*(_reachable(db) for db in databases))
            for db, up in zip(databases, reachable, strict=True):
                self._metrics.upstream_up.labels(self._metrics.database_label(db.name)).set(
                    1.0 if up else 0.0)
            result = None if any(reachable) else "no upstream database is reachable"
            self._upstream = (time.monotonic(), result)
            return result


def _journal_volume(directory: Path) -> str | None:
    """Blocking: can a file be created in the journal directory, and is there room?"""
    probe = directory / PROBE_NAME
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        os.close(fd)
        os.unlink(probe)
        stats = os.statvfs(directory)
    except OSError as e:
        return f"journal directory is not writable: {errno.errorcode.get(e.errno or 0, e)}"
    if stats.f_bavail * stats.f_frsize < JOURNAL_MIN_FREE_BYTES:
        return "journal volume is full"
    return None


async def _reachable(db: DatabaseSettings) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(db.host, db.port),
                                           UPSTREAM_TIMEOUT_S)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class HealthServer:
    """Serves the metrics port until :meth:`stop`."""

    def __init__(self, settings: MetricsSettings, metrics: Metrics,
                 readiness: Readiness) -> None:
        self.settings = settings
        self.metrics = metrics
        self.readiness = readiness
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.settings.host, self.settings.port, limit=MAX_REQUEST_HEAD)
        log.info("metrics listening", extra={"listen": f"{self.settings.host}:{self.port}"})

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()  # created by asyncio.start_server; tracked for stop()
        if task is not None:
            self._connections.add(task)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            try:
                answer = await self._answer(head)
            except Exception:  # e.g. a collector failed: say so, keep serving
                log.exception("metrics endpoint failed")
                answer = ("500 Internal Server Error", "text/plain", b"internal error\n", False)
            await _respond(writer, *answer)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass  # a slow, oversized or vanished client: just close
        finally:
            writer.close()
            if task is not None:
                self._connections.discard(task)

    async def _answer(self, head: bytes) -> tuple[str, str, bytes, bool]:
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return "400 Bad Request", "text/plain", b"bad request\n", False
        method, path = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return "405 Method Not Allowed", "text/plain", b"GET or HEAD only\n", False
        head_only = method == b"HEAD"
        if path == b"/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, await self._metrics(), head_only
        if path == b"/healthz":
            return "200 OK", "text/plain", b"ok\n", head_only
        if path == b"/readyz":
            report = await self.readiness.check()
            status = "200 OK" if report.ready else "503 Service Unavailable"
            body = json.dumps({"ready": report.ready, "checks": report.checks}).encode()
            return status, "application/json", body + b"\n", head_only
        return "404 Not Found", "text/plain", b"not found\n", head_only

    async def _metrics(self) -> bytes:
        # Rendering stats journal segments and takes the registry's locks: off the loop.
        return await asyncio.to_thread(self.metrics.render)


async def _respond(writer: asyncio.StreamWriter, status: str, content_type: str, body: bytes,
                   head_only: bool) -> None:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
            "Connection: close\r\n\r\n").encode("ascii")
    writer.write(head if head_only else head + body)
    await writer.drain()
