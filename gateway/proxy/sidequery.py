"""One read-only query on a short-lived service connection, bounded in every way.

Used where the gateway must ask the upstream something beside a session (the policy plug-in's
catalog reads, the watchdog's look at ``pg_stat_activity``). Never waits on a session: the
connection is its own, with ``lock_timeout`` and ``statement_timeout`` (a session holding a
lock on a catalog table makes the query fail in seconds instead of hanging), under an overall
deadline. Any failure raises :class:`SideQueryFailed`.
"""

from __future__ import annotations

import asyncio

from protocols.postgres import messages as m
from protocols.postgres.decoder import decode_backend
from protocols.postgres.encoder import encode

from ..errors import GatewayError, UpstreamUnavailable
from ..settings.config import DatabaseSettings
from .upstream import connect_upstream

# A lock held by someone else fails the query quickly, a slow server a little later. No JIT:
# the planner overestimates the catalog reads' joins over pg_proc past jit_above_cost, and
# compiling them took 100 ms of the volatility read's 115 ms.
SIDE_OPTIONS = "-c lock_timeout=2s -c statement_timeout=10s -c jit=off"
SIDE_DEADLINE_S = 15.0  # connect + query, whatever the server does

Rows = list[tuple[str | None, ...]]


class SideQueryFailed(UpstreamUnavailable):
    """The query could not be answered (in time)."""


async def side_query(db: DatabaseSettings, dbname: str, sql: str, max_message_size: int, *,
                     application: str, deadline_s: float = SIDE_DEADLINE_S) -> Rows:
    """Run one query upstream within the bounds; text-format rows."""
    try:
        return await asyncio.wait_for(_query(db, dbname, sql, max_message_size, application),
                                      deadline_s)
    except TimeoutError as e:
        raise SideQueryFailed("phigate: the upstream did not answer in time") from e
    except SideQueryFailed:
        raise
    except (GatewayError, OSError, asyncio.IncompleteReadError) as e:
        raise SideQueryFailed("phigate: the upstream could not be asked",
                              detail=type(e).__name__) from e


async def _query(db: DatabaseSettings, dbname: str, sql: str, max_message_size: int,
                 application: str) -> Rows:
    upstream = await connect_upstream(
        db, dbname, {"application_name": application, "options": SIDE_OPTIONS},
        max_message_size)
    stream = upstream.stream
    try:
        await stream.send(encode(m.Query(sql=sql)))
        rows: Rows = []
        while True:
            message = decode_backend(await stream.read_frame())
            if isinstance(message, m.DataRow):
                rows.append(tuple(None if v is None else v.decode("utf-8")
                                  for v in message.values))
            elif isinstance(message, m.ErrorResponse):
                raise SideQueryFailed(f"phigate: upstream query failed: {message.message}")
            elif isinstance(message, m.ReadyForQuery):
                return rows
    finally:
        stream.writer.write(encode(m.Terminate()))
        stream.close()
