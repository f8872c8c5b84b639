"""The relay's per-session bookkeeping: what is in flight.

:class:`Pending` is something sent upstream whose answer the upstream→client direction
will see (the names the client created are in ``gateway/proxy/names.py``). Driven by
``gateway/proxy/relay.py``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..errors import StatementRefused
from .frames import B_COPY_IN_RESPONSE, B_NOTICE, B_ROW_DESCRIPTION
from .hooks import Outcome, ResultFilter, RowLimit, RowTransformer, Statement
from .names import Portal


class Kind(enum.Enum):
    QUERY = 1  # simple Query: ends at ReadyForQuery
    EXECUTE = 2  # one Execute: ends at its completion message
    SYNC = 3  # a Sync: ends at ReadyForQuery
    REFUSAL = 4  # gateway refusal: swallow ParseComplete/BindComplete, replace the error
    LOCAL = 5  # answered by the gateway itself (a consumed setting) with nothing in flight
    FUNCTION = 6  # fast-path FunctionCall: FunctionCallResponse or ErrorResponse, then its own Z


@dataclass(slots=True)
class Pending:
    """Something sent upstream whose answer the upstream→client task will see."""

    kind: Kind
    statement: Statement | None = None
    outcome: Outcome = field(default_factory=Outcome)
    started: float = 0.0
    replacement: bytes | None = None  # our ErrorResponse, sent instead of the upstream's
    row_limit: RowLimit | None = None
    rows_before: int = 0  # rows a suspended portal already returned
    bytes_before: int = 0  # and their payload bytes
    portal: Portal | None = None
    cancelled: bool = False
    capture: int = 0  # result rows to keep for the hooks (statement.capture_rows)
    result_filter: ResultFilter | None = None
    transformer: RowTransformer | None = None  # for the result now arriving
    transforming: bool = False  # the filter was asked about the result now arriving
    cut: StatementRefused | None = None  # a filter refused the result: its error
    # For a Query or Sync: how many texts the relay had read that a change of client_encoding
    # or standard_conforming_strings could make the server read differently (TextReading).
    texts_read: int = 0


def keep_row(head: Pending, buf: bytearray, start: int, end: int) -> None:
    outcome = head.outcome
    if outcome.sample is None:
        outcome.sample = []
    if len(outcome.sample) < head.capture:
        outcome.sample.append(bytes(buf[start:end]))


def keep_detail(head: Pending, type_byte: int, frame: bytes) -> None:
    outcome = head.outcome
    if type_byte == B_ROW_DESCRIPTION:
        outcome.row_description = frame
    elif type_byte == B_NOTICE:
        outcome.notices.append(frame)
    elif type_byte == B_COPY_IN_RESPONSE:
        outcome.copy_direction = "in"
    else:
        outcome.copy_direction = "out"
