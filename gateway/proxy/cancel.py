"""CancelRequest mapping: the client's cancel key → the upstream's.

Each session hands its client the upstream's real process id (so
``pg_backend_pid()`` and NOTIFY pids match) with a secret key of the
gateway's own. A CancelRequest arriving on a fresh connection is matched on
both, in constant time, and forwarded to the upstream with the upstream's key.
Driven by ``gateway/proxy/server.py`` (registration) and ``gateway/proxy/results.py`` (row
limits cancel the running query too).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from dataclasses import dataclass

from protocols.postgres import messages as m
from protocols.postgres.encoder import encode

log = logging.getLogger("phigate.cancel")

CANCEL_CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class UpstreamKey:
    host: str
    port: int
    process_id: int
    secret_key: bytes


@dataclass(frozen=True, slots=True)
class CancelKey:
    process_id: int
    secret_key: bytes


class CancelRegistry:
    """Live sessions' cancel keys. Owned by the server; sessions register and forget."""

    def __init__(self) -> None:
        self._by_pid: dict[int, list[tuple[bytes, UpstreamKey]]] = {}

    def register(self, upstream: UpstreamKey) -> CancelKey:
        # Protocol 3.0 cancel keys are 4 bytes; clients echo them back verbatim.
        secret = secrets.token_bytes(4)
        self._by_pid.setdefault(upstream.process_id, []).append((secret, upstream))
        return CancelKey(upstream.process_id, secret)

    def forget(self, key: CancelKey) -> None:
        entries = self._by_pid.get(key.process_id, [])
        entries[:] = [(s, u) for s, u in entries if s != key.secret_key]
        if not entries:
            self._by_pid.pop(key.process_id, None)

    def lookup(self, process_id: int, secret_key: bytes) -> UpstreamKey | None:
        found = None
        for secret, upstream in self._by_pid.get(process_id, []):
            if hmac.compare_digest(secret, secret_key):
                found = upstream
        return found


async def send_cancel(upstream: UpstreamKey) -> None:
    """Open a new connection to the upstream and send its CancelRequest (best effort).

    Returns once the server has closed the connection: it signals the backend before it
    closes, so a statement sent after this returns cannot be the one the cancel hits."""
    request = encode(m.CancelRequest(process_id=upstream.process_id,
                                     secret_key=upstream.secret_key))
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(upstream.host, upstream.port), CANCEL_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as e:
        log.warning("cancel request could not reach upstream: %s", e)
        return
    try:
        writer.write(request)
        await writer.drain()
        await asyncio.wait_for(reader.read(), CANCEL_CONNECT_TIMEOUT_S)  # the server's EOF
    except (OSError, TimeoutError) as e:
        log.warning("cancel request failed: %s", e)
    finally:
        writer.close()
