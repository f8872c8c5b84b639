"""The watchdog: a session owing its client an answer while the database waits for the gateway.

Driven by ``proxy/server.py``: one task for all sessions while ``limits.watchdog_timeout`` is
not 0. Every quarter of the limit it asks each relay whether an answer is overdue
(``Relay.stall``: a statement in the hooks, or sent upstream with nothing back, for longer
than the limit, while the client has nothing left to send). For such a session it asks the
upstream, on a connection of its own (``proxy.sidequery``), whether that session's backend is
waiting to read from the gateway (``pg_stat_activity.wait_event = 'ClientRead'``). Only then
is it a gateway bug, and only that session ends: logged with its state, its statements'
outcomes and its ``session_end`` journaled with the state (through the hooks), the client told
(SQLSTATE XX000, FATAL). It can never make things worse: a database still working (a long
query, a lock wait) is left alone, a question the upstream cannot answer does nothing, and
every check is bounded.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable

from ..errors import GatewayError
from .relay import Relay
from .sidequery import SideQueryFailed, side_query

log = logging.getLogger("phigate.watchdog")

PROBE_SQL = ("SELECT wait_event_type, wait_event FROM pg_catalog.pg_stat_activity "
             "WHERE pid = {pid}")
PROBE_DEADLINE_S = 5.0


class SessionStalled(GatewayError):
    """The gateway owed an answer the upstream was not working on: ended by the watchdog."""

    sqlstate = "XX000"


async def watch(relays: Callable[[], Iterable[Relay]], limit_s: float,
                max_message_size: int) -> None:
    """Run until cancelled; ends the sessions that cannot make progress."""
    period = max(limit_s / 4, 0.05)
    checking: set[Relay] = set()
    probes: set[asyncio.Task[None]] = set()
    while True:
        await asyncio.sleep(period)
        now = time.monotonic()
        for relay in list(relays()):
            state = relay.stall(now, limit_s)
            if state is None or relay in checking:
                continue
            checking.add(relay)
            task = asyncio.create_task(_check(relay, state, limit_s, max_message_size),
                                       name=f"watchdog-{relay.session.session_id}")
            probes.add(task)
            task.add_done_callback(probes.discard)
            task.add_done_callback(functools.partial(_forget, checking, relay))


def _forget(checking: set[Relay], relay: Relay, _task: asyncio.Task[None]) -> None:
    checking.discard(relay)


async def _check(relay: Relay, state: dict[str, object], limit_s: float,
                 max_message_size: int) -> None:
    waiting = await upstream_waits_for_gateway(relay, max_message_size)
    if not waiting or relay.stall(time.monotonic(), limit_s) is None:
        return  # the database is working, or we cannot tell, or the session moved on
    log.error("watchdog: no answer while the upstream waits for the gateway; ending the "
              "session", extra={"session": relay.session.session_id, "state": state})
    relay.abort(SessionStalled(
        f"phigate: internal error: no answer after {limit_s:g} s while the database was "
        "waiting for the gateway; the session is ended",
        hint="reconnect; the gateway logged and journaled this session's state"), state)


async def upstream_waits_for_gateway(relay: Relay, max_message_size: int) -> bool:
    """True if the session's backend is reading from the gateway; False if busy or unknown."""
    if relay.upstream_db is None:
        return False
    db, dbname = relay.upstream_db
    try:
        rows = await side_query(db, dbname, PROBE_SQL.format(pid=int(relay.upstream_pid)),
                                max_message_size, application="phigate/watchdog",
                                deadline_s=PROBE_DEADLINE_S)
    except SideQueryFailed as e:
        log.warning("watchdog: could not ask the upstream about a session: %s", e.message,
                    extra={"session": relay.session.session_id})
        return False
    return bool(rows) and rows[0] == ("Client", "ClientRead")
