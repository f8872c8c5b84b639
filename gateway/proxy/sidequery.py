"""One read-only query on a short-lived service connection, bounded in every way.

Used where the gateway must ask the upstream something beside a session (the policy plug-in's
catalog reads, the watchdog's look at ``pg_stat_activity``). Never waits on a session: the
connection is its own, with ``lock_timeout`` and ``statement_timeout`` (a session holding a
lock on a catalog table makes the query fail in seconds instead of hanging), under an overall
deadline. Any failure raises :class:`SideQueryFailed`.

With ``reuse`` (the catalog reads) the connection is kept for the next query of the same
upstream database, application and credential, up to :data:`MAX_IDLE` of them for at most
:data:`IDLE_S`: a new backend loads its catalog caches first, which made each read 30 ms
slower than the query. Only a connection that answered cleanly and is idle outside a
transaction is kept; one that failed, timed out or was cancelled is closed. A kept
connection found closed (the server restarted, or ended it) is replaced by a new one, once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from protocols.postgres import messages as m
from protocols.postgres.decoder import decode_backend
from protocols.postgres.encoder import encode

from ..errors import GatewayError, UpstreamUnavailable
from ..settings.config import DatabaseSettings
from .upstream import connect_upstream
from .wire import FrameStream, PeerClosed

# A lock held by someone else fails the query quickly, a slow server a little later. No JIT:
# the planner overestimates the catalog reads' joins over pg_proc past jit_above_cost, and
# compiling them took 100 ms of the volatility read's 115 ms.
SIDE_OPTIONS = "-c lock_timeout=2s -c statement_timeout=10s -c jit=off"
SIDE_DEADLINE_S = 15.0  # connect + query, whatever the server does

MAX_IDLE = 2  # kept connections per upstream database: the catalog reads run two at a time
IDLE_S = 30.0  # a kept connection unused this long is closed (its sessions may all have left)

Rows = list[tuple[str | None, ...]]
Key = tuple[str, int, str, str, str, str]  # host, port, user, database, application, TLS


@dataclass(slots=True)
class _Kept:
    stream: FrameStream
    loop: asyncio.AbstractEventLoop
    expiry: asyncio.TimerHandle | None = None


_kept: dict[Key, list[_Kept]] = {}


class _Stale(Exception):
    """A kept connection was closed while it waited: ask on a new one."""


class SideQueryFailed(UpstreamUnavailable):
    """The query could not be answered (in time)."""


async def side_query(db: DatabaseSettings, dbname: str, sql: str, max_message_size: int, *,
                     application: str, deadline_s: float = SIDE_DEADLINE_S,
                     reuse: bool = False) -> Rows:
    """Run one query upstream within the bounds; text-format rows. ``reuse``: on a kept
    connection if there is one, and keep it afterwards."""
    try:
        return await asyncio.wait_for(
            _query(db, dbname, sql, max_message_size, application, reuse), deadline_s)
    except TimeoutError as e:
        raise SideQueryFailed("phigate: the upstream did not answer in time") from e
    except SideQueryFailed:
        raise
    except (GatewayError, OSError, asyncio.IncompleteReadError, PeerClosed) as e:
        raise SideQueryFailed("phigate: the upstream could not be asked",
                              detail=type(e).__name__) from e


async def _query(db: DatabaseSettings, dbname: str, sql: str, max_message_size: int,
                 application: str, reuse: bool) -> Rows:
    key = (db.host, db.port, db.user, dbname, application, db.tls) if reuse else None
    if key is not None:
        while (kept := _take(key)) is not None:
            try:
                return await _ask(kept, sql, key, reused=True)
            except _Stale:
                continue
    upstream = await connect_upstream(
        db, dbname, {"application_name": application, "options": SIDE_OPTIONS},
        max_message_size)
    return await _ask(upstream.stream, sql, key, reused=False)


async def _ask(stream: FrameStream, sql: str, key: Key | None, *, reused: bool) -> Rows:
    """The rows of ``sql``; then the connection is kept (``key``) or closed."""
    kept = False
    try:
        await stream.send(encode(m.Query(sql=sql)))
        rows: Rows = []
        while True:
            try:
                message = decode_backend(await stream.read_frame())
            except (OSError, asyncio.IncompleteReadError, PeerClosed) as e:
                if reused and not rows:
                    raise _Stale() from e
                raise
            if isinstance(message, m.DataRow):
                rows.append(tuple(None if v is None else v.decode("utf-8")
                                  for v in message.values))
            elif isinstance(message, m.ErrorResponse):
                if reused and not rows and message.severity in ("FATAL", "PANIC"):
                    raise _Stale()  # ended while it waited (pg_terminate_backend, shutdown)
                raise SideQueryFailed(f"phigate: upstream query failed: {message.message}")
            elif isinstance(message, m.ReadyForQuery):
                kept = key is not None and message.status == "I" and _keep(key, stream)
                return rows
    finally:
        if not kept:
            stream.writer.write(encode(m.Terminate()))
            stream.close()


def _take(key: Key) -> FrameStream | None:
    """A kept connection of this event loop, or None."""
    loop = asyncio.get_running_loop()
    kept = _kept.get(key, [])
    while kept:
        entry = kept.pop()
        if entry.loop is not loop:
            continue  # kept by an event loop that has ended (tests): its socket went with it
        if entry.expiry is not None:
            entry.expiry.cancel()
        if not entry.stream.writer.is_closing():
            return entry.stream
        entry.stream.close()
    return None


def _keep(key: Key, stream: FrameStream) -> bool:
    kept = _kept.setdefault(key, [])
    if len(kept) >= MAX_IDLE:
        return False
    loop = asyncio.get_running_loop()
    entry = _Kept(stream, loop)
    entry.expiry = loop.call_later(IDLE_S, _expire, key, entry)
    kept.append(entry)
    return True


def close_kept() -> None:
    """Close every kept connection of this event loop (at shutdown)."""
    loop = asyncio.get_running_loop()
    for key, kept in list(_kept.items()):
        for entry in [e for e in kept if e.loop is loop]:
            _expire(key, entry)


def _expire(key: Key, entry: _Kept) -> None:
    kept = _kept.get(key, [])
    if entry in kept:
        kept.remove(entry)
        if entry.expiry is not None:
            entry.expiry.cancel()
        entry.stream.writer.write(encode(m.Terminate()))
        entry.stream.close()
