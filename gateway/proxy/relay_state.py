"""The relay's per-session state, shared by both of its directions.

:class:`RelayState` is the base of :class:`gateway.proxy.relay.Relay`: it holds the two
transports and their buffers, what is in flight (:class:`Pending`, ``proxy/bookkeeping.py``),
the journal holds, the pause reasons, the transaction status, the summary and how the
session ends, and the few steps both directions take (pause a side, complete a statement,
end the session). The directions are mixins on it (``proxy/client_side.py``,
``proxy/upstream_side.py``, ``proxy/results.py``), so a message costs no extra hop between
objects: this is the hot path of every statement. Built by start-up (``proxy/startup.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from ..settings.config import DatabaseSettings
from .bookkeeping import Pending
from .cancel import UpstreamKey
from .hooks import EndReason, HookChain, Phase, SessionInfo, SessionSummary
from .pipes import Pipe
from .textreading import TextReading

log = logging.getLogger("phigate.relay")  # one logger for the whole relay

# While a hook waits, the client's bytes are buffered up to this much before the gateway stops
# reading them (a frame may be bigger: reading goes on until it is whole); and the upstream's
# while its answer is held for a journal entry.
BACKLOG_LIMIT = 256 * 1024
# Why a side's reading is paused (any reason keeps it paused).
FULL, BUSY, HELD = "the other side's write buffer is full", "hooks busy", "answer held"
# A Query and a FunctionCall are each answered with their own ReadyForQuery; Parse/Execute wait
# for the client's Sync.
ANSWERED_WITH_READY = frozenset((Phase.SIMPLE, Phase.FUNCTION))


class RelayState:
    """One session's state after start-up, and the steps both directions share."""

    def __init__(self, session: SessionInfo, client: Pipe, upstream: Pipe, hooks: HookChain,
                 cancel_target: UpstreamKey, *, max_message_size: int,
                 idle_timeout_s: float = 0.0, reading: TextReading | None = None) -> None:
        self.session = session
        self._client_pipe, self._upstream_pipe = client, upstream
        self._client = client.transport
        self._upstream = upstream.transport
        self._hooks = hooks
        self._cancel_target = cancel_target
        self._max = max_message_size
        self._idle_timeout_s = idle_timeout_s
        self._client_buf = bytearray(client.leftover)
        self._upstream_buf = bytearray(upstream.leftover)
        self._done: asyncio.Future[None] | None = None  # set once the session is over
        self._stopped = False
        # The client direction while a hook waits (None: handled in data_received).
        self._client_task: asyncio.Task[None] | None = None
        self._client_fresh = False  # bytes arrived while that task ran
        self._client_gone = False  # EOF while that task ran: end once it is done
        self._upstream_gone = False  # EOF while an answer was held: end once it is sent
        self._hold_waiting = False  # a callback waits on the first hold
        self._paused: dict[asyncio.Transport, set[str]] = {self._client: set(),
                                                           self._upstream: set()}
        self._client_seen = time.monotonic()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._pending: deque[Pending] = deque()
        # Journal entries of read-only statements forwarded before they were durable: no
        # byte from the upstream reaches the client until every one of them is.
        self._holds: deque[asyncio.Future[int]] = deque()
        self._reading = reading or TextReading()
        self._names = session.names
        self._names.encoding = self._reading.encoding
        self._discarding = False  # after a refusal in an extended batch, until Sync
        self._status = "I"  # transaction status of the last ReadyForQuery
        self._transaction = session.transaction  # a hook's wait for the transaction's end
        self._number = 0
        self.summary = SessionSummary()
        self._end: EndReason | None = None
        # The upstream said FATAL (terminated backend, shutdown, crash): the client has its
        # own words, and nothing may follow them.
        self._upstream_fatal = False
        # CancelRequests a limit cut sent upstream that may not have landed yet: the client's
        # next frames wait for them (``client_side.py``), or a late one cancels that statement.
        self._cancels: list[asyncio.Task[None]] = []
        # For the watchdog (``proxy/watchdog.py``): who moved last, and since when a statement
        # is in the hooks (0: none is).
        self.upstream_db: tuple[DatabaseSettings, str] | None = None  # set by start-up
        self._progress = time.monotonic()  # last frames from the client or bytes from upstream
        self._deciding_since = 0.0
        self._deciding = 0  # number of the statement in the hooks
        self._last_client_type = 0
        self._copying_in = False  # between CopyInResponse and the COPY's completion

    def _pause(self, transport: asyncio.Transport, reason: str, on: bool) -> None:
        """Stop (or go on) reading ``transport`` for ``reason``; it reads while none holds."""
        reasons = self._paused[transport]
        before = bool(reasons)
        if on:
            reasons.add(reason)
        else:
            reasons.discard(reason)
        if before != bool(reasons) and not transport.is_closing():
            if reasons:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _finish(self) -> None:
        """The session is over: ``run`` cleans up (next tick); nothing more is handled."""
        self._stopped = True
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _ended(self, reason: EndReason) -> None:
        if self._end is None:
            self._end = reason

    def _failed(self) -> None:
        """A bug in the gateway: end this session (clients see the connection close)."""
        log.exception("relay failed; ending the session",
                      extra={"session": self.session.session_id})
        self._ended(EndReason.PROTOCOL_ERROR)
        self._finish()

    def _complete(self, pending: Pending) -> None:
        statement = pending.statement
        assert statement is not None
        outcome = pending.outcome
        outcome.duration_s = time.monotonic() - pending.started if pending.started else 0.0
        if pending.portal is not None:
            pending.portal.rows_sent += outcome.rows
            pending.portal.bytes_sent += outcome.bytes_to_client - 5 * outcome.rows
        if pending.cut is not None:
            outcome.sqlstate = pending.cut.sqlstate
            outcome.error_message = pending.cut.message
        elif pending.cancelled and pending.row_limit is not None:
            limit = pending.row_limit
            error = limit.byte_error if outcome.byte_limit_hit and limit.byte_error else limit.error
            outcome.sqlstate = error.sqlstate
            outcome.error_message = error.message
        self.summary.rows += outcome.rows
        self._hooks.after_statement(statement, outcome)
