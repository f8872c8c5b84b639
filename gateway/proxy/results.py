"""The relay's rows off the fast path: row/byte limits and results a hook rewrites.

Driven by ``proxy/upstream_side.py`` for the DataRows (and CopyData) of a statement that has
a row limit or a result filter (live masking): a limit cuts the answer at its first row too
many (the rest is dropped, the query cancelled, its end replaced by the limit's error); a
filter's transformer rewrites each row, or refuses the result. A mixin of
:class:`gateway.proxy.relay.Relay`.
"""

from __future__ import annotations

import asyncio

from protocols.postgres import messages as m
from protocols.postgres.decoder import decode_frontend

from ..errors import StatementRefused
from .bookkeeping import Kind, Pending, keep_row
from .cancel import send_cancel
from .frames import B_COPY_OUT_RESPONSE, B_ROW_DESCRIPTION, error_frame
from .hooks import RowTransformer
from .relay_state import RelayState


class ResultRows(RelayState):
    """Rows counted against a statement's limits and rewritten by its filter."""

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
            self._cancels.append(task)
        return True

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
