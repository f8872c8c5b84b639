"""The per-session relay: client ⇄ upstream after start-up, driven by frame scans.

Both sockets are asyncio Protocols (``gateway/proxy/pipes.py``): what the upstream
sends is handled in its ``data_received``, what the client sends too unless a hook has to
wait (then that direction continues in a task until its buffer is handled). Frames are
forwarded verbatim in bulk; only the messages that mark a statement or its end are decoded (Query,
Parse, Bind, Execute, FunctionCall, Close from the client; CommandComplete,
ErrorResponse, EmptyQueryResponse, PortalSuspended and ReadyForQuery from
the upstream). DataRows are counted, never decoded.

Every statement passes ``HookChain.before_statement`` before it is forwarded
(see ``gateway/proxy/hooks.py`` for the contract). A refusal is carried out by the
upstream itself: the gateway sends a statement that raises an error there
(:data:`REFUSAL_SQL`) and replaces that error with its own ErrorResponse. So
transaction state, pipeline error recovery (discard until Sync) and
ReadyForQuery are exactly PostgreSQL's, whatever the client had in flight.

:class:`Relay` is one object assembled from one module per job, so no message pays a hop
between objects: ``relay_state.py`` (what both directions share), ``client_side.py``
(client → upstream), ``upstream_side.py`` (upstream → client), ``results.py`` (row limits,
rewritten rows). This module owns the session's lifetime: run, shutdown, idle timeout and
what the watchdog asks (``proxy/watchdog.py``). Built and run by ``proxy/startup.py``;
``proxy/server.py`` shuts it down.
"""

from __future__ import annotations

import asyncio
import time

from protocols.postgres import messages as m
from protocols.postgres.encoder import encode

from ..errors import GatewayError
from .client_side import ClientSide
from .frames import F_BIND, F_CLOSE, F_COPY_DATA, F_DESCRIBE, F_EXECUTE, F_PARSE, error_frame
from .hooks import EndReason, SessionSummary
from .pipes import attach, linger_close
from .relay_state import FULL
from .upstream_side import UpstreamSide

# After these the server answers nothing until the client sends more (Sync, Flush, CopyDone).
CLIENT_STILL_SENDING = frozenset((F_PARSE, F_BIND, F_EXECUTE, F_DESCRIBE, F_CLOSE, F_COPY_DATA))


class Relay(ClientSide, UpstreamSide):
    """Relays one authenticated session until either side closes."""

    async def run(self) -> SessionSummary:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        attach(self._client, self._client_received, self._client_closed, self._client_full)
        attach(self._upstream, self._upstream_received, self._upstream_closed,
               self._upstream_full)
        if self._idle_timeout_s:
            self._idle_timer = loop.call_later(self._idle_timeout_s, self._idle_check)
        if self._upstream_buf:
            self._upstream_ready()
        if self._client_buf:
            self._run_client()
        if self._upstream_pipe.at_eof:
            self._upstream_closed(None)
        if self._client_pipe.at_eof:
            self._client_closed(None)
        try:
            await self._done
        finally:
            self._stopped = True
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            tasks = [*self._cancels, *([self._client_task] if self._client_task else [])]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._finish_pending()
            linger_close(self._client)
            if not self._upstream.is_closing():
                self._upstream.close()
        self.summary.end = self._end or EndReason.CLIENT_DISCONNECT
        return self.summary

    def _client_full(self, full: bool) -> None:
        """The client reads slower than the upstream answers: stop reading the upstream."""
        self._pause(self._upstream, FULL, full)

    def _upstream_full(self, full: bool) -> None:
        self._pause(self._client, FULL, full)

    def shutdown(self, message: str = "terminating connection due to administrator command",
                 sqlstate: str = "57P01", reason: EndReason = EndReason.SHUTDOWN) -> None:
        """Tell the client why the gateway ends the session (FATAL) and end it."""
        self._end = self._end or reason
        if not self._client.is_closing():
            self._client.write(encode(m.error_response(sqlstate, message, severity="FATAL")))
            linger_close(self._client)
        self._finish()

    @property
    def upstream_pid(self) -> int:
        return self._cancel_target.process_id

    def stall(self, now: float, limit_s: float) -> dict[str, object] | None:
        """The session's state if it owes the client an answer that is overdue, else None.

        Overdue: a statement has been in the hooks for ``limit_s``, or something sent upstream
        has had no answer for ``limit_s`` while the client has nothing left to send (no
        extended batch waiting for its Sync or Flush, no refused batch waiting for its Sync, no
        COPY FROM STDIN waiting for its data). Whether the upstream is
        idle meanwhile is for the watchdog to ask.
        """
        if self._end is not None:
            return None
        if self._deciding_since:
            if now - self._deciding_since < limit_s:
                return None
        elif (not self._pending or self._discarding or self._copying_in
              or now - self._progress < limit_s
              or self._last_client_type in CLIENT_STILL_SENDING):
            return None
        return {
            "session": self.session.session_id, "identity": self.session.identity,
            "in_hooks_s": round(now - self._deciding_since, 3) if self._deciding_since else 0,
            "in_hooks_statement": self._deciding if self._deciding_since else None,
            "quiet_s": round(now - self._progress, 3), "transaction": self._status,
            "pending": [f"{p.kind.name.lower()}:{p.statement.number if p.statement else '-'}"
                        for p in self._pending],
            "last_client_message": chr(self._last_client_type or 32).strip(),
            "upstream_buffered": len(self._upstream_buf),
            "client_buffered": len(self._client_buf),
        }

    def abort(self, error: GatewayError, state: dict[str, object]) -> None:
        """End a stalled session: its client gets ``error``, its statements it as outcome."""
        self._ended(EndReason.WATCHDOG)
        self.summary.annotations["watchdog"] = state
        for pending in self._pending:
            pending.outcome.sqlstate = error.sqlstate
            pending.outcome.error_message = error.message
        if not self._client.is_closing():
            self._client.write(error_frame(error))
            linger_close(self._client)
        self._finish()

    def _finish_pending(self) -> None:
        """Statements still in flight when the session ends get an outcome too."""
        while self._pending:
            pending = self._pending.popleft()
            if pending.statement is not None:
                pending.outcome.sqlstate = pending.outcome.sqlstate or "08006"
                pending.outcome.error_message = (pending.outcome.error_message
                                                 or "session ended before the result")
                self._complete(pending)

    def _idle_check(self) -> None:
        """No bytes from the client for ``idle_timeout_s`` and nothing owed it: end."""
        quiet = time.monotonic() - self._client_seen
        if self._stopped:
            return
        loop = asyncio.get_running_loop()
        if quiet < self._idle_timeout_s or self._pending:
            wait = self._idle_timeout_s - quiet if not self._pending else self._idle_timeout_s
            self._idle_timer = loop.call_later(max(wait, 0.001), self._idle_check)
            return
        self._ended(EndReason.IDLE_TIMEOUT)
        self._client.write(encode(m.error_response(
            "57P05", "terminating connection due to idle-session timeout", severity="FATAL")))
        self._finish()
