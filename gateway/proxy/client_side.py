"""The relay's client → upstream direction: client frames into statements, through the hooks.

Driven by the client pipe's ``data_received`` (``proxy/pipes.py``): each burst of frames is
scanned in bulk and forwarded verbatim, except the frames that run a statement (Query, Parse,
Execute, FunctionCall), which become a :class:`Statement` and pass
``HookChain.before_statement`` first (``proxy/hooks.py``). Mostly every hook answers at
once and the burst is handled inside ``data_received``; when one has to wait, the rest goes
on in a task. A pipeline's statements behind a write-ahead one are decided meanwhile and
each frame is held until its own entry is durable (``proxy/outbox.py``). Refusals are sent
upstream as a statement that fails there (``proxy/frames.py``); the answers come back
through ``proxy/upstream_side.py``. A mixin of :class:`gateway.proxy.relay.Relay`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from protocols.postgres import messages as m
from protocols.postgres import peek
from protocols.postgres.decoder import decode_frontend
from protocols.postgres.encoder import encode
from protocols.postgres.encodings import EncodingRefused
from protocols.postgres.errors import ProtocolError
from protocols.postgres.framing import scan

from ..errors import JournalWriteFailed, StatementRefused, UnreadableText
from .bookkeeping import Kind, Pending
from .frames import (
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
from .hooks import EndReason, Phase, Statement, Verdict
from .outbox import Gate, Outbox
from .pipes import resume
from .relay_state import ANSWERED_WITH_READY, BACKLOG_LIMIT, BUSY, RelayState

# The frames that go through the hooks; all but Parse run something upstream.
STATEMENT_TYPES = frozenset((F_QUERY, F_PARSE, F_EXECUTE, F_FUNCTION))


class ClientSide(RelayState):
    """What the client sends: framed, decided by the hooks, forwarded."""

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
            self._pause(self._client, BUSY, True)

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
        except Exception as e:
            self._client_failed(e)
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
        except Exception as e:
            self._client_failed(e)
            return
        finally:
            self._client_task = None
        if not going or self._client_gone:
            self._ended(EndReason.CLIENT_DISCONNECT)
            self._finish()
            return
        self._pause(self._client, BUSY, False)

    def _client_closed(self, error: Exception | None) -> None:
        if self._stopped:
            return
        if self._client_task is not None:
            self._client_gone = True  # what it sent before its EOF is handled first
            return
        self._ended(EndReason.CLIENT_DISCONNECT)
        self._finish()

    def _client_failed(self, e: Exception) -> None:
        """Handling the client's frames raised: a protocol error is the client's (FATAL
        with its SQLSTATE), anything else the gateway's."""
        if isinstance(e, ProtocolError):
            self._client_protocol_error(e)
        else:
            self._failed()

    def _client_protocol_error(self, e: ProtocolError) -> None:
        self._ended(EndReason.PROTOCOL_ERROR)
        self._client.write(encode(m.error_response(e.sqlstate, e.message, severity="FATAL")))
        self._finish()

    async def _process_client(self) -> bool:
        """Handle every whole frame buffered from the client; False once it terminated."""
        buf = self._client_buf
        spans, consumed = scan(buf, self._max)
        self._progress = time.monotonic()
        if spans:
            self._last_client_type = spans[-1][0]
        outbox = Outbox(self._upstream.write, self._refuse_late)
        if self._cancels:  # a limit cut's cancel in flight: let it land first, or it could
            await self._cancels_delivered()  # cancel the statement sent next
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
        in_flight = [t for t in self._cancels if not t.done()]
        if in_flight:
            await asyncio.wait(in_flight)
        self._cancels = [t for t in self._cancels if not t.done()]  # ones sent meanwhile stay

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


def _last_statement(spans: list[tuple[int, int, int]]) -> int:
    """Index of the last frame that runs a statement (-1: none): those before it are
    pipelined (see ``Statement.pipelined``)."""
    for index in range(len(spans) - 1, -1, -1):
        if spans[index][0] in _RUNS:
            return index
    return -1


_RUNS = frozenset((F_QUERY, F_EXECUTE, F_FUNCTION))
