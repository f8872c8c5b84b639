"""The relay's upstream → client direction: answers, holds and outcomes.

Driven by the upstream pipe's ``data_received`` (``proxy/pipes.py``): each burst is scanned
in bulk and forwarded verbatim; DataRows are counted, never decoded (a row limit or a
hook's filter takes them off that fast path: ``proxy/results.py``). Only CommandComplete,
ErrorResponse, EmptyQueryResponse, PortalSuspended, ReadyForQuery (and ParameterStatus,
descriptions) are read: they end the statement at the head of the in-flight queue, whose
outcome goes to ``HookChain.after_statement``, and the upstream's error for a refusal is
replaced by the gateway's own. An answer to a statement forwarded before its journal entry
was durable is held until it is, and dropped (the session ends) if it never is. A mixin of
:class:`gateway.proxy.relay.Relay`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from protocols.postgres import messages as m
from protocols.postgres import peek
from protocols.postgres.decoder import decode_backend
from protocols.postgres.encoder import encode
from protocols.postgres.errors import ProtocolError
from protocols.postgres.framing import scan

from ..errors import JournalWriteFailed, StatementRefused
from .bookkeeping import Kind, Pending, keep_detail, keep_row
from .frames import (
    B_BIND_COMPLETE,
    B_COMMAND_COMPLETE,
    B_COPY_DATA,
    B_COPY_IN_RESPONSE,
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
)
from .hooks import EndReason
from .pipes import linger_close
from .relay_state import ANSWERED_WITH_READY, BACKLOG_LIMIT, HELD
from .results import ResultRows

log = logging.getLogger("phigate.relay")  # one logger for the whole relay

# An ErrorResponse's first field is its severity ('S'); these end the backend.
_FATAL_SEVERITIES = frozenset((b"SFATAL", b"SPANIC"))


class UpstreamSide(ResultRows):
    """What the upstream answers: released once durable, accounted, forwarded."""

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
                    self._pause(self._upstream, HELD, True)
                return False
            failure = (JournalWriteFailed("the journal is closed") if durable.cancelled()
                       else durable.exception())
            if failure is not None:
                self._journal_failed(failure if isinstance(failure, StatementRefused) else
                                     JournalWriteFailed("the audit journal cannot be written"))
                self._finish()
                return False
            holds.popleft()
        self._pause(self._upstream, HELD, False)
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
        status = self._status = chr(frame[5])
        if status == "I" and self._transaction.on_idle is not None:
            self._transaction_over()
        self._names.described.clear()  # Describes an error skipped get no answer

    def _transaction_over(self) -> None:
        """Tell the hook that waits for it: the session's transaction is over."""
        on_idle, self._transaction.on_idle = self._transaction.on_idle, None
        try:
            if on_idle is not None:
                on_idle()
        except Exception:  # a hook's bookkeeping never breaks the session's answers
            log.exception("transaction-end hook failed",
                          extra={"session": self.session.session_id})
