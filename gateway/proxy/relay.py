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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

from protocols.postgres import messages as m
from protocols.postgres import peek
from protocols.postgres.decoder import decode_backend, decode_frontend
from protocols.postgres.encoder import encode
from protocols.postgres.encodings import EncodingRefused
from protocols.postgres.errors import ProtocolError
from protocols.postgres.framing import scan

from ..errors import GatewayError, JournalWriteFailed, StatementRefused, UnreadableText
from ..settings.config import DatabaseSettings
from .bookkeeping import Kind, Pending, keep_detail, keep_row
from .cancel import UpstreamKey, send_cancel
from .frames import (
    B_BIND_COMPLETE,
    B_COMMAND_COMPLETE,
    B_COPY_DATA,
    B_COPY_IN_RESPONSE,
    B_COPY_OUT_RESPONSE,
    B_DATA_ROW,
    B_DESCRIPTION,
    B_END_OF_STATEMENT,
    B_ERROR,
    B_FUNCTION_RESULT,
    B_PARAMETER_STATUS,
    B_PARSE_COMPLETE,
    B_PORTAL_SUSPENDED,
    B_READY,
    B_RESULT_DETAIL,
    B_ROW_DESCRIPTION,
    F_BIND,
    F_CLOSE,
    F_COPY_DATA,
    F_DESCRIBE,
    F_EXECUTE,
    F_FUNCTION,
    F_PARSE,
    F_QUERY,
    F_SYNC,
    F_TERMINATE,
    FRONTEND_TYPES,
    NOOP_SET_SQL,
    REFUSAL_EXTENDED,
    REFUSAL_QUERY,
    error_frame,
)
from .hooks import (
    EndReason,
    HookChain,
    Phase,
    RowTransformer,
    SessionInfo,
    SessionSummary,
    Statement,
    Verdict,
)
from .outbox import Gate, Outbox
from .pipes import Pipe, attach, linger_close, resume
from .textreading import TextReading

log = logging.getLogger("phigate.relay")

# While a hook waits, the client's bytes are buffered up to this much before the gateway stops
# reading them (a frame may be bigger: reading goes on until it is whole); and the upstream's
# while its answer is held for a journal entry.
BACKLOG_LIMIT = 256 * 1024
# Why a side's reading is paused (any reason keeps it paused).
_FULL, _BUSY, _HELD = "the other side's write buffer is full", "hooks busy", "answer held"
# An ErrorResponse's first field is its severity ('S'); these end the backend.
_FATAL_SEVERITIES = frozenset((b"SFATAL", b"SPANIC"))
# A Query and a FunctionCall are each answered with their own ReadyForQuery; Parse/Execute wait
# for the client's Sync.
ANSWERED_WITH_READY = frozenset((Phase.SIMPLE, Phase.FUNCTION))
# The frames that go through the hooks; all but Parse run something upstream.
STATEMENT_TYPES = frozenset((F_QUERY, F_PARSE, F_EXECUTE, F_FUNCTION))
# After these the server answers nothing until the client sends more (Sync, Flush, CopyDone).
CLIENT_STILL_SENDING = frozenset((F_PARSE, F_BIND, F_EXECUTE, F_DESCRIBE, F_CLOSE, F_COPY_DATA))


class Relay:
    """Relays one authenticated session until either side closes."""

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
        self._number = 0
        self.summary = SessionSummary()
        self._end: EndReason | None = None
        # The upstream said FATAL (terminated backend, shutdown, crash): the client has its
        # own words, and nothing may follow them.
        self._upstream_fatal = False
        self._tasks: list[asyncio.Task[None]] = []
        # For the watchdog (``proxy/watchdog.py``): who moved last, and since when a statement
        # is in the hooks (0: none is).
        self.upstream_db: tuple[DatabaseSettings, str] | None = None  # set by start-up
        self._progress = time.monotonic()  # last frames from the client or bytes from upstream
        self._deciding_since = 0.0
        self._deciding = 0  # number of the statement in the hooks
        self._last_client_type = 0
        self._copying_in = False  # between CopyInResponse and the COPY's completion

    # ---------------------------------------------------------------- lifetime

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
            tasks = [*self._tasks, *([self._client_task] if self._client_task else [])]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._finish_pending()
            linger_close(self._client)
            if not self._upstream.is_closing():
                self._upstream.close()
        self.summary.end = self._end or EndReason.CLIENT_DISCONNECT
        return self.summary

    def _finish(self) -> None:
        """The session is over: ``run`` cleans up (next tick); nothing more is handled."""
        self._stopped = True
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

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

    def _client_full(self, full: bool) -> None:
        """The client reads slower than the upstream answers: stop reading the upstream."""
        self._pause(self._upstream, _FULL, full)

    def _upstream_full(self, full: bool) -> None:
        self._pause(self._client, _FULL, full)

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

    def _ended(self, reason: EndReason) -> None:
        if self._end is None:
            self._end = reason

    def _finish_pending(self) -> None:
        """Statements still in flight when the session ends get an outcome too."""
        while self._pending:
            pending = self._pending.popleft()
            if pending.statement is not None:
                pending.outcome.sqlstate = pending.outcome.sqlstate or "08006"
                pending.outcome.error_message = (pending.outcome.error_message
                                                 or "session ended before the result")
                self._complete(pending)

    # ---------------------------------------------------------- client → upstream

    def _client_received(self, data: bytes) -> None:
        if self._stopped:
            return
        self._client_seen = time.monotonic()
        self._client_buf += data
        if self._client_task is None:
            self._run_client()
            return
        self._client_fresh = True
        if len(self._client_buf) > BACKLOG_LIMIT:
            self._pause(self._client, _BUSY, True)

    def _run_client(self) -> None:
        """Handle the client's buffered frames now; if a hook has to wait, in a task.

        The coroutine is driven by hand: mostly every hook answers at once, and then no
        task, future or wake-up is needed for the statement.
        """
        coroutine = self._process_client()
        try:
            waiting_on = coroutine.send(None)
        except StopIteration as stop:
            if stop.value is False:
                self._finish()
            return
        except ProtocolError as e:
            self._client_protocol_error(e)
            return
        except Exception:
            self._failed()
            return
        self._client_task = asyncio.create_task(
            self._client_later(resume(coroutine, waiting_on)),
            name=f"relay-c2u-{self.session.session_id}")

    async def _client_later(self, first: Coroutine[Any, Any, bool]) -> None:
        try:
            going = await first
            while going and self._client_fresh and not self._stopped:
                self._client_fresh = False
                going = await self._process_client()
        except ProtocolError as e:
            self._client_protocol_error(e)
            return
        except Exception:
            self._failed()
            return
        finally:
            self._client_task = None
        if not going or self._client_gone:
            self._ended(EndReason.CLIENT_DISCONNECT)
            self._finish()
            return
        self._pause(self._client, _BUSY, False)

    def _client_closed(self, error: Exception | None) -> None:
        if self._stopped:
            return
        if self._client_task is not None:
            self._client_gone = True  # what it sent before its EOF is handled first
            return
        self._ended(EndReason.CLIENT_DISCONNECT)
        self._finish()

    def _failed(self) -> None:
        """A bug in the gateway: end this session (clients see the connection close)."""
        log.exception("relay failed; ending the session",
                      extra={"session": self.session.session_id})
        self._ended(EndReason.PROTOCOL_ERROR)
        self._finish()

    def _client_protocol_error(self, e: ProtocolError) -> None:
        self._ended(EndReason.PROTOCOL_ERROR)
        self._client.write(encode(m.error_response(e.sqlstate, e.message, severity="FATAL")))
        self._finish()

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

    async def _process_client(self) -> bool:
        """Handle every whole frame buffered from the client; False once it terminated."""
        buf = self._client_buf
        spans, consumed = scan(buf, self._max)
        self._progress = time.monotonic()
        if spans:
            self._last_client_type = spans[-1][0]
        outbox = Outbox(self._upstream.write, self._refuse_late)
        if len(self._tasks) > 2:  # a limit cut's cancel in flight: let it land first, or it
            await self._cancels_delivered()  # could cancel the statement sent next
        last = _last_statement(spans)
        for index, (type_byte, start, end) in enumerate(spans):
            if type_byte not in FRONTEND_TYPES:
                raise ProtocolError(f"invalid frontend message type {chr(type_byte)!r}")
            if self._discarding:
                if type_byte != F_SYNC:
                    continue
                self._discarding = False
            frame = bytes(buf[start:end])
            if type_byte in STATEMENT_TYPES:
                if outbox.runs:
                    outbox.send_ready()
                await self._statement_frame(type_byte, frame, outbox, index < last)
            elif type_byte == F_COPY_DATA:
                self._copy_in(frame)
                outbox.add(frame)
            elif type_byte == F_BIND:
                self._names.bind(frame)
                outbox.add(frame)
            elif type_byte == F_SYNC:
                self._pending.append(Pending(Kind.SYNC, texts_read=self._reading.count))
                outbox.add(frame)
            elif type_byte == F_DESCRIBE:
                self._names.describe(frame)
                outbox.add(frame)
            elif type_byte == F_CLOSE:
                self._names.close(frame)
                outbox.add(frame)
            elif type_byte == F_TERMINATE:
                self._ended(EndReason.CLIENT_TERMINATE)
                outbox.add(frame)
                del buf[:consumed]
                await outbox.send_all(self._waiting)
                return False
            else:
                outbox.add(frame)
        del buf[:consumed]
        await outbox.send_all(self._waiting)
        return True

    async def _cancels_delivered(self) -> None:
        cancels = [t for t in self._tasks[2:] if not t.done()]
        if cancels:
            await asyncio.wait(cancels)
        self._tasks[2:] = [t for t in self._tasks[2:] if not t.done()]  # newer ones stay

    def _waiting(self, waiting: bool) -> None:
        """A pipelined statement waits for its journal entry: the watchdog counts it as
        time in the hooks."""
        self._deciding_since = time.monotonic() if waiting else 0.0

    async def _statement_frame(self, type_byte: int, frame: bytes, outbox: Outbox,
                               pipelined: bool) -> None:
        """Run the hooks for a statement frame; add what to send upstream instead."""
        try:
            statement, pending = self._statement_for(type_byte, frame)
        except EncodingRefused as e:
            statement, pending = self._unreadable(type_byte, frame, e)
        statement.received_at = time.perf_counter()
        statement.idle_before = not self._pending and self._status == "I"
        statement.pipelined = pipelined
        self._deciding_since, self._deciding = time.monotonic(), statement.number
        try:
            verdict = await self._hooks.before_statement(statement)
        finally:
            self._deciding_since = 0.0
        if statement.durable is not None:
            self._holds.append(statement.durable)
        if verdict.refusal is not None:
            outbox.add(self._refuse(statement, pending, verdict.refusal))
            return
        if verdict.rewrite_sql is not None and pending is not None and \
                statement.phase is Phase.SIMPLE:
            if not verdict.rewrite_sql.strip() and not self._pending:
                self._answer_locally(pending, verdict.local_tag or "SET")
                return
            # Behind something in flight, the upstream answers in our place, in order: the
            # Query may end an extended batch that has no Sync yet, as the client's would.
            frame = encode(m.Query(sql=verdict.rewrite_sql.strip() or NOOP_SET_SQL))
        if pending is not None:
            pending.capture = statement.capture_rows
            pending.result_filter = verdict.result_filter
            pending.row_limit = verdict.row_limit
            if pending.portal is not None and verdict.row_limit is not None:
                pending.portal.row_limit = verdict.row_limit
            pending.started = time.monotonic()
            pending.outcome.gateway_latency_s = time.perf_counter() - statement.received_at
            self._pending.append(pending)
            self.summary.statements += 1
        if statement.write_ahead is not None:
            outbox.add_gated(frame, Gate(statement.write_ahead, statement, pending))
        else:
            outbox.add(frame)
        outbox.runs = statement.phase is not Phase.PARSE

    def _statement_for(self, type_byte: int, frame: bytes) -> tuple[Statement, Pending | None]:
        """Build the Statement a frame stands for, and what to track for its result."""
        session, reading = self.session, self._reading
        if type_byte == F_QUERY:
            sql = peek.query_sql(frame, reading.encoding)
            reading.read(frame)
            self._number += 1
            statement = Statement(session, self._number, Phase.SIMPLE, sql,
                                  standard_strings=reading.standard_strings)
            return statement, Pending(Kind.QUERY, statement, texts_read=reading.count)
        if type_byte == F_PARSE:
            name, sql = peek.parse_name_sql(frame, reading.encoding)
            reading.read(frame)
            self._names.parse(name, sql, reading.standard_strings)
            return Statement(session, self._number, Phase.PARSE, sql, statement_name=name,
                             standard_strings=reading.standard_strings), None
        if type_byte == F_EXECUTE:
            portal_name = peek.execute_portal(frame, reading.encoding)
            portal = self._names.portals.get(portal_name)
            self._number += 1
            if portal is None:  # the upstream will report the missing portal
                unknown = Statement(session, self._number, Phase.EXECUTE, "",
                                    portal_name=portal_name)
                return unknown, Pending(Kind.EXECUTE, unknown)
            statement = Statement(session, self._number, Phase.EXECUTE, portal.sql,
                                  statement_name=portal.statement_name, portal_name=portal_name,
                                  bind_frame=portal.bind_frame,
                                  standard_strings=portal.standard_strings)
            pending = Pending(Kind.EXECUTE, statement, portal=portal,
                               rows_before=portal.rows_sent, bytes_before=portal.bytes_sent,
                               row_limit=portal.row_limit)
            pending.outcome.row_description = self._names.descriptions.get(portal.statement_name)
            return statement, pending
        call = decode_frontend(frame)
        assert isinstance(call, m.FunctionCall)
        self._number += 1
        statement = Statement(session, self._number, Phase.FUNCTION,
                              f"-- fast-path function call, oid {call.function_oid}",
                              function_call=call)
        return statement, Pending(Kind.FUNCTION, statement)

    def _unreadable(self, type_byte: int, frame: bytes, error: EncodingRefused
                    ) -> tuple[Statement, Pending | None]:
        """A statement whose text the session's encoding cannot read: refused as PostgreSQL
        refuses it (22021), and shown to the hooks (and so journaled) with escaped bytes."""
        phase = {F_QUERY: Phase.SIMPLE, F_PARSE: Phase.PARSE}.get(type_byte, Phase.EXECUTE)
        if phase is not Phase.PARSE:
            self._number += 1
        text = frame[5:].rstrip(b"\x00").decode("ascii", "backslashreplace")
        statement = Statement(self.session, self._number, phase, text)
        statement.verdict = Verdict(refusal=UnreadableText(error.message))
        pending = Pending(Kind.QUERY if phase is Phase.SIMPLE else Kind.EXECUTE, statement)
        return statement, None if phase is Phase.PARSE else pending

    def _answer_locally(self, pending: Pending, tag: str) -> None:
        """Complete a simple query without the upstream (nothing else is in flight)."""
        pending.kind = Kind.LOCAL
        pending.outcome.command_tags.append(tag)
        self.summary.statements += 1
        self._client.write(encode(m.CommandComplete(tag=tag))
                           + encode(m.ReadyForQuery(status=self._status)))
        self._complete(pending)

    def _refuse(self, statement: Statement, pending: Pending | None,
                refusal: StatementRefused) -> bytes:
        self.summary.refused += 1
        replacement = error_frame(refusal)
        record = pending or Pending(Kind.EXECUTE, statement)
        record.kind = Kind.REFUSAL
        record.replacement = replacement
        record.started = time.monotonic()
        record.outcome.refused = True
        record.outcome.sqlstate = refusal.sqlstate
        record.outcome.error_message = refusal.message
        if statement.phase is Phase.PARSE:
            record.statement = None  # nothing was to run yet: no outcome to report
            self._names.forget_statement(statement.statement_name)
        self._pending.append(record)
        if statement.phase in ANSWERED_WITH_READY:
            return REFUSAL_QUERY  # the upstream's ErrorResponse and ReadyForQuery, as for a call
        self._discarding = True
        return REFUSAL_EXTENDED

    def _refuse_late(self, gate: Gate, failure: BaseException) -> bytes:
        """A pipelined statement whose journal entry failed: refused in its place in the
        queue, as if the hooks had refused it (what follows it in the batch is skipped)."""
        refusal = failure if isinstance(failure, StatementRefused) else JournalWriteFailed(
            "the audit journal cannot be written")
        record, statement = gate.pending, gate.statement
        assert record is not None  # only statements that run are journaled (not Parse)
        self.summary.statements -= 1
        self.summary.refused += 1
        statement.verdict = Verdict(refusal=refusal)
        record.kind = Kind.REFUSAL
        record.replacement = error_frame(refusal)
        record.outcome.refused = True
        record.outcome.sqlstate = refusal.sqlstate
        record.outcome.error_message = refusal.message
        return REFUSAL_QUERY if statement.phase in ANSWERED_WITH_READY else REFUSAL_EXTENDED

    def _copy_in(self, frame: bytes) -> None:
        """COPY FROM STDIN data belongs to the statement at the head of the queue."""
        if not self._pending:
            return
        outcome = self._pending[0].outcome
        outcome.copy_in_bytes += len(frame) - 5
        if self._pending[0].capture:
            if outcome.copy_in_sample is None:
                outcome.copy_in_sample = []
            if len(outcome.copy_in_sample) < self._pending[0].capture:
                outcome.copy_in_sample.append(frame)

    # ---------------------------------------------------------- upstream → client

    def _upstream_received(self, data: bytes) -> None:
        if self._stopped:
            return
        self._progress = time.monotonic()
        self._upstream_buf += data
        self._upstream_ready()

    def _upstream_ready(self) -> None:
        """Send what the upstream answered, unless a held statement's entry is not durable."""
        if self._holds and not self._released():
            return
        if self._upstream_buf:
            try:
                self._process_upstream()
            except ProtocolError as e:
                log.error("upstream protocol error: %s", e.message)
                self._ended(EndReason.PROTOCOL_ERROR)
                self._client.write(encode(m.error_response(e.sqlstate, e.message,
                                                           severity="FATAL")))
                self._finish()
                return
            except Exception:
                self._failed()
                return
        if self._upstream_gone:
            self._upstream_lost()
            self._finish()

    def _upstream_closed(self, error: Exception | None) -> None:
        if self._stopped:
            return
        if self._holds and self._upstream_buf:
            self._upstream_gone = True  # what it sent before is released (or dropped) first
            return
        self._upstream_lost()
        self._finish()

    def _released(self) -> bool:
        """True once every held statement's entry is durable; else waits for the first.

        What the upstream sent so far answers statements already forwarded, and each of
        those registered its hold before it was forwarded; so once all are durable, all
        of it may go. On a failure nothing of it does: the session ends with the
        journal's error instead, and the held bytes are dropped unread.
        """
        holds = self._holds
        while holds:
            durable = holds[0]
            if not durable.done():
                if not self._hold_waiting:
                    self._hold_waiting = True
                    durable.add_done_callback(self._hold_done)
                if len(self._upstream_buf) > BACKLOG_LIMIT:
                    self._pause(self._upstream, _HELD, True)
                return False
            failure = (JournalWriteFailed("the journal is closed") if durable.cancelled()
                       else durable.exception())
            if failure is not None:
                self._journal_failed(failure if isinstance(failure, StatementRefused) else
                                     JournalWriteFailed("the audit journal cannot be written"))
                self._finish()
                return False
            holds.popleft()
        self._pause(self._upstream, _HELD, False)
        return True

    def _hold_done(self, durable: asyncio.Future[int]) -> None:
        self._hold_waiting = False
        if not self._stopped:
            self._upstream_ready()

    def _journal_failed(self, error: StatementRefused) -> None:
        log.error("journal entry of a forwarded read-only statement failed; its answer is "
                  "discarded and the session ended", extra={"session": self.session.session_id})
        self._ended(EndReason.JOURNAL_FAILED)
        self._upstream_buf.clear()
        for pending in self._pending:
            pending.outcome.sqlstate = error.sqlstate
            pending.outcome.error_message = error.message
        if not self._client.is_closing():
            self._client.write(encode(m.error_response(error.sqlstate, error.message,
                                                       severity="FATAL", hint=error.hint)))
            linger_close(self._client)

    def _upstream_lost(self) -> None:
        if self._end is not None:
            return
        self._ended(EndReason.UPSTREAM_DISCONNECT)
        if not self._upstream_fatal and not self._client.is_closing():
            self._client.write(encode(m.error_response(
                "08006", "phigate: connection to the upstream database was lost",
                severity="FATAL")))

    def _process_upstream(self) -> None:
        buf = self._upstream_buf
        spans, consumed = scan(buf, self._max)
        pending = self._pending
        out = bytearray()
        copied = 0  # buf[copied:start] is still to be forwarded verbatim
        for type_byte, start, end in spans:
            if type_byte == B_DATA_ROW or type_byte == B_COPY_DATA:
                if pending:
                    head = pending[0]
                    if head.result_filter is not None:  # rows rewritten: off the fast path
                        out += buf[copied:start]
                        copied = end
                        out += self._filtered_row(head, bytes(buf[start:end]))
                        continue
                    head.outcome.rows += 1
                    head.outcome.bytes_to_client += end - start
                    if head.row_limit is not None and self._over_limit(head, end - start):
                        out += buf[copied:start]
                        copied = end
                    elif head.capture:
                        keep_row(head, buf, start, end)
                continue
            if type_byte == B_PARAMETER_STATUS:
                self._follow_setting(bytes(buf[start:end]))
                continue
            if type_byte == B_FUNCTION_RESULT:
                if pending:  # a fast-path call's one result value (loread's bytes): one row
                    pending[0].outcome.rows += 1
                    pending[0].outcome.bytes_to_client += end - start
                continue
            if type_byte in B_DESCRIPTION and self._names.described and (
                    not pending or pending[0].kind is not Kind.QUERY):
                self._names.description(type_byte, bytes(buf[start:end]))
            if type_byte == B_ERROR and bytes(buf[start + 5:start + 11]) in _FATAL_SEVERITIES:
                self._upstream_fatal = True
            if not pending:
                continue
            if type_byte in B_RESULT_DETAIL:
                if type_byte == B_COPY_IN_RESPONSE:
                    self._copying_in = True  # the client sends next: its data, then CopyDone
                if pending[0].result_filter is not None:
                    self._filtered_result(pending[0], type_byte, bytes(buf[start:end]))
                if pending[0].capture:
                    keep_detail(pending[0], type_byte, bytes(buf[start:end]))
                continue
            if type_byte not in B_END_OF_STATEMENT:
                continue
            replacement = self._end_of_statement(type_byte, buf, start, end)
            if replacement is not None:
                out += buf[copied:start]
                out += replacement
                copied = end
        if copied == 0 and consumed == len(buf):
            self._client.write(bytes(buf))
            buf.clear()
            return
        out += buf[copied:consumed]
        del buf[:consumed]
        self._client.write(out)

    def _follow_setting(self, frame: bytes) -> None:
        """Read later text as the server will once it reports a new client_encoding or
        standard_conforming_strings. Text already read the old way and sent after the
        statement that changed it would now mean something else upstream: end the session."""
        status = decode_backend(frame, self._reading.encoding)
        assert isinstance(status, m.ParameterStatus)
        boundary = next((p.texts_read for p in self._pending
                         if p.kind in (Kind.QUERY, Kind.SYNC)), self._reading.count)
        self._reading.follow(status.name, status.value, read_since=boundary)
        self._names.encoding = self._reading.encoding

    def _over_limit(self, head: Pending, size: int) -> bool:
        """True when this DataRow (or CopyData) of ``size`` bytes must be dropped; cancels the
        query at the first one. Bytes are payloads: frames less their 5-byte headers."""
        limit, outcome = head.row_limit, head.outcome
        assert limit is not None
        rows_ok = head.rows_before + outcome.rows <= limit.max_rows
        if rows_ok and (limit.max_bytes is None or head.bytes_before + outcome.bytes_to_client
                        - 5 * outcome.rows <= limit.max_bytes):
            return False
        outcome.rows -= 1
        outcome.bytes_to_client -= size  # never sent
        if not head.cancelled:
            head.cancelled = True
            error = limit.error if not rows_ok or limit.byte_error is None else limit.byte_error
            outcome.row_limit_hit = True
            outcome.byte_limit_hit = error is limit.byte_error
            head.replacement = error_frame(error)
            task = asyncio.create_task(send_cancel(self._cancel_target),
                                       name=f"cancel-{self.session.session_id}")
            self._tasks.append(task)
        return True

    # ------------------------------------------------ results a hook rewrites (masking)

    def _filtered_result(self, head: Pending, type_byte: int, frame: bytes) -> None:
        """A simple query's RowDescription, or any COPY TO's CopyOutResponse, starts a
        result: ask the statement's filter how its rows are to be rewritten."""
        result_filter = head.result_filter
        assert result_filter is not None
        if head.cancelled:
            return
        try:
            if type_byte == B_COPY_OUT_RESPONSE:
                head.transformer = result_filter.copy_out(frame)
                head.transforming = True
            elif type_byte == B_ROW_DESCRIPTION and head.kind is Kind.QUERY:
                head.transformer = result_filter.rows(frame, None)
                head.transforming = True
        except StatementRefused as refusal:
            self._cut(head, refusal)

    def _filtered_row(self, head: Pending, frame: bytes) -> bytes:
        """One DataRow/CopyData of a filtered statement: what the client receives instead."""
        if head.cancelled:
            return b""
        try:
            if not head.transforming:  # an Execute: its portal's or statement's Describe
                head.transformer = self._execute_transformer(head)
                head.transforming = True
            if head.transformer is not None:
                frame = head.transformer.transform(frame)
        except StatementRefused as refusal:
            self._cut(head, refusal)
            return b""
        head.outcome.rows += 1
        head.outcome.bytes_to_client += len(frame)
        if head.row_limit is not None and self._over_limit(head, len(frame)):
            return b""
        if head.capture:
            keep_row(head, bytearray(frame), 0, len(frame))
        return frame

    def _execute_transformer(self, head: Pending) -> RowTransformer | None:
        assert head.result_filter is not None
        portal = head.portal
        if portal is None:
            return head.result_filter.rows(None, None)
        description = portal.described.frame or (portal.prepared.frame
                                                 if portal.prepared else None)
        bind = decode_frontend(portal.bind_frame)
        assert isinstance(bind, m.Bind)
        return head.result_filter.rows(description, bind.result_formats)

    def _result_done(self, head: Pending) -> None:
        """A result ended: keep what its transformer did; a simple query may hold more."""
        assert head.transformer is not None
        report = head.transformer.report()
        if report:
            head.outcome.transformed = {**(head.outcome.transformed or {}), **report}
        head.transformer = None
        head.transforming = False

    def _cut(self, head: Pending, refusal: StatementRefused) -> None:
        """End a result with ``refusal``: later rows are dropped, its end is replaced."""
        head.cancelled = True
        head.cut = refusal
        head.replacement = error_frame(refusal)

    def _end_of_statement(self, type_byte: int, buf: bytearray, start: int,
                          end: int) -> bytes | None:
        """Account for a completion message; return bytes to send instead, or None."""
        self._copying_in = False
        head = self._pending[0]
        if head.kind is Kind.REFUSAL:
            return self._refusal_response(head, type_byte, bytes(buf[start:end]))
        if type_byte == B_READY:
            self._ready(bytes(buf[start:end]))
            return None
        if type_byte in (B_PARSE_COMPLETE, B_BIND_COMPLETE):
            return None
        if head.kind is Kind.SYNC:
            return None  # e.g. an error for a Parse/Bind: nothing of ours to account for
        outcome = head.outcome
        if head.transformer is not None:
            self._result_done(head)
        if type_byte == B_ERROR:
            frame = bytes(buf[start:end])
            error = self._reading.backend_error(frame)
            outcome.sqlstate = error.sqlstate
            outcome.error_message = error.message
            if head.capture:
                outcome.error_frame = frame
        elif type_byte == B_COMMAND_COMPLETE:
            outcome.command_tags.append(peek.command_tag(bytes(buf[start:end])))
        elif type_byte == B_PORTAL_SUSPENDED:
            outcome.suspended = True
        replacement = head.replacement if head.cancelled else None
        if head.kind is Kind.EXECUTE:
            self._pending.popleft()
            self._complete(head)
            if type_byte == B_ERROR or replacement is not None:
                self._skip_until_sync()
        return replacement

    def _refusal_response(self, head: Pending, type_byte: int, frame: bytes) -> bytes | None:
        if type_byte in (B_PARSE_COMPLETE, B_BIND_COMPLETE):
            return b""  # answers to the gateway's own refusal statement
        if type_byte == B_ERROR:
            replacement = head.replacement
            head.replacement = b""  # a simple query's later messages pass untouched
            if head.statement is None or head.statement.phase not in ANSWERED_WITH_READY:
                self._pending.popleft()
                if head.statement is not None:
                    self._complete(head)
                self._skip_until_sync()
            return replacement
        if type_byte == B_READY:  # simple-protocol refusal finished
            self._pending.popleft()
            self._complete(head)
            self._after_ready(frame)
        return None

    def _skip_until_sync(self) -> None:
        """After an error in an extended batch the upstream skips to Sync; so do we."""
        while self._pending and self._pending[0].kind is not Kind.SYNC:
            skipped = self._pending.popleft()
            if skipped.statement is not None:
                skipped.outcome.sqlstate = "25P02"  # never ran: skipped after an earlier error
                skipped.outcome.error_message = "skipped after an earlier error in the batch"
                self._complete(skipped)

    def _ready(self, frame: bytes) -> None:
        """ReadyForQuery ends a simple query, a fast-path call or a Sync'd batch."""
        while self._pending:
            head = self._pending.popleft()
            if head.statement is not None:
                self._complete(head)
            if head.kind in (Kind.QUERY, Kind.SYNC, Kind.FUNCTION):
                break
        self._after_ready(frame)

    def _after_ready(self, frame: bytes) -> None:
        self._status = chr(frame[5])
        self._names.described.clear()  # Describes an error skipped get no answer

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


def _last_statement(spans: list[tuple[int, int, int]]) -> int:
    """Index of the last frame that runs a statement (-1: none): those before it are
    pipelined (see ``Statement.pipelined``)."""
    for index in range(len(spans) - 1, -1, -1):
        if spans[index][0] in _RUNS:
            return index
    return -1


_RUNS = frozenset((F_QUERY, F_EXECUTE, F_FUNCTION))
