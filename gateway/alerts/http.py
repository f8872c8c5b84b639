"""A minimal asyncio HTTP/1.1 client: one POST per connection, status code back.

Enough for webhooks and nothing more: no redirects, no keep-alive, no
chunked responses (only the status line is read). Driven by
:class:`.sinks.WebhookSink`; the caller bounds the whole exchange with a
timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

MAX_STATUS_LINE = 8192  # a status line longer than this is not an HTTP server we can talk to
CLOSE_WAIT_S = 1.0


class HttpError(Exception):
    """The exchange failed before a status code was received."""


def _target(url: str) -> tuple[str, int, str, bool]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return parts.hostname, parts.port or (443 if tls else 80), path, tls


async def post(url: str, body: bytes, headers: Mapping[str, str]) -> int:
    """POST ``body`` to ``url``; return the response's status code. Raises HttpError."""
    host, port, path, tls = _target(url)
    context = ssl.create_default_context() if tls else None
    try:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if tls else None)
    except (OSError, ssl.SSLError) as e:
        raise HttpError(f"cannot connect to {host}:{port}: {e}") from e
    try:
        authority = host if port in (80, 443) else f"{host}:{port}"
        head = [f"POST {path} HTTP/1.1", f"Host: {authority}",
                f"Content-Length: {len(body)}", "Connection: close"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        line = await reader.readuntil(b"\n")
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
        raise HttpError(f"no HTTP response from {host}:{port}: {type(e).__name__}") from e
    finally:
        await _close(writer)
    return _status(line[:MAX_STATUS_LINE])


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    # Only the status line matters; a peer slow to finish the TLS close must not hold us.
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), CLOSE_WAIT_S)


def _status(line: bytes) -> int:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise HttpError(f"malformed HTTP status line: {line[:80]!r}")
    return int(parts[1])
