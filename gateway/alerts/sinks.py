"""Where alerts go: a signed webhook, a structured line on stderr, or syslog.

Each sink makes one delivery attempt per ``send`` and raises
:class:`SinkError` when it fails; retries, backoff and queueing belong to
:class:`.dispatcher.Dispatcher`, which drives the sinks from its own tasks so
no statement ever waits on one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import logging.handlers
import sys
from typing import Protocol

from ..errors import ConfigError
from .http import HttpError, post
from .model import Alert
from .settings import SinkSettings

SIGNATURE_HEADER = "X-PHIGate-Signature"
ALERT_ID_HEADER = "X-PHIGate-Alert"
USER_AGENT = "phigate-alerts/1"
_RETRYABLE_STATUS = frozenset({408, 425, 429})


class SinkError(Exception):
    """One delivery attempt failed; ``retryable`` says whether another might succeed."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class Sink(Protocol):
    settings: SinkSettings

    async def send(self, alert: Alert) -> None: ...

    def close(self) -> None: ...


def body(alert: Alert) -> bytes:
    """The exact bytes that are signed and sent."""
    return json.dumps(alert.document(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, default=str).encode("utf-8")


def signature(secret: str, raw_body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA-256 of the raw body with the shared secret."""
    digest = hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookSink:
    def __init__(self, settings: SinkSettings) -> None:
        self.settings = settings

    async def send(self, alert: Alert) -> None:
        raw = body(alert)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   ALERT_ID_HEADER: alert.id}
        if self.settings.secret is not None:
            headers[SIGNATURE_HEADER] = signature(self.settings.secret.value, raw)
        assert self.settings.url is not None  # required for webhooks by the config
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                status = await post(self.settings.url, raw, headers)
        except TimeoutError as e:
            raise SinkError(f"no answer within {self.settings.timeout_s:g}s") from e
        except HttpError as e:
            raise SinkError(str(e)) from e
        if not 200 <= status < 300:
            raise SinkError(f"HTTP {status}",
                            retryable=status >= 500 or status in _RETRYABLE_STATUS)

    def close(self) -> None:
        return None


class LogSink:
    """One JSON object per alert on stderr, shaped like the gateway's own log lines."""

    def __init__(self, settings: SinkSettings) -> None:
        self.settings = settings

    async def send(self, alert: Alert) -> None:
        # Written directly, not through logging: an alert must appear whatever the log level.
        line = {"time": alert.time, "level": "warning", "logger": "phigate.alert",
                "message": alert.summary, "alert": alert.document()}
        try:
            sys.stderr.write(json.dumps(line, default=str, ensure_ascii=False) + "\n")
            sys.stderr.flush()
        except (OSError, ValueError) as e:
            raise SinkError(f"cannot write to stderr: {e}") from e

    def close(self) -> None:
        return None


class _RaisingSysLogHandler(logging.handlers.SysLogHandler):
    def handleError(self, record: logging.LogRecord) -> None:
        # Called from emit's except block: re-raise, so a failed send is reported, not printed.
        raise


class SyslogSink:
    """RFC 3164 messages, ``phigate: <json>``, to ``/dev/log`` or ``host:port`` (UDP)."""

    def __init__(self, settings: SinkSettings) -> None:
        self.settings = settings
        facility = logging.handlers.SysLogHandler.facility_names.get(settings.facility)
        if facility is None:
            raise ConfigError(f"unknown syslog facility {settings.facility!r}",
                              key=f"alerts.sinks.{settings.name}.facility")
        self._facility = facility
        self._address = _syslog_address(settings.syslog_address or "/dev/log")
        self._handler: logging.handlers.SysLogHandler | None = None

    async def send(self, alert: Alert) -> None:
        message = json.dumps(alert.document(), default=str, ensure_ascii=False)
        record = logging.makeLogRecord({"msg": message, "levelno": logging.WARNING,
                                        "levelname": "WARNING", "name": "phigate.alert"})
        try:
            await asyncio.to_thread(self._emit, record)
        except OSError as e:
            raise SinkError(f"syslog {self.settings.syslog_address}: {e}") from e

    def _emit(self, record: logging.LogRecord) -> None:
        if self._handler is None:  # connects on creation: made lazily, retried after failures
            handler = _RaisingSysLogHandler(self._address, self._facility)
            handler.setFormatter(logging.Formatter("phigate: %(message)s"))
            self._handler = handler
        try:
            self._handler.emit(record)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self._handler is not None:
            self._handler.close()
            self._handler = None


def _syslog_address(text: str) -> str | tuple[str, int]:
    if text.startswith("/"):
        return text
    host, _, port = text.rpartition(":")
    return (host or "127.0.0.1", int(port)) if port.isdigit() else (text, 514)


def build_sink(settings: SinkSettings) -> Sink:
    if settings.type == "webhook":
        return WebhookSink(settings)
    if settings.type == "syslog":
        return SyslogSink(settings)
    return LogSink(settings)
