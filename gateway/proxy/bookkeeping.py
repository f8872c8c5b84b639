"""The relay's per-session bookkeeping: what is in flight, and the names the client created.

:class:`Pending` is something sent upstream whose answer the upstream→client direction
will see; :class:`SessionNames` tracks prepared statements, portals and Describe answers by
name, as the server does. Driven by ``gateway/proxy/relay.py``.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from protocols.postgres import peek

from ..errors import StatementRefused
from .frames import B_COPY_IN_RESPONSE, B_NOTICE, B_ROW_DESCRIPTION
from .hooks import Outcome, ResultFilter, RowLimit, RowTransformer, Statement


@dataclass(slots=True)
class Described:
    """The Describe answer of one Parse (or one portal): a new object per Parse, so an
    Execute is always matched with the description of what its portal really runs."""

    frame: bytes | None = None


class Kind(enum.Enum):
    QUERY = 1  # simple Query: ends at ReadyForQuery
    EXECUTE = 2  # one Execute: ends at its completion message
    SYNC = 3  # a Sync: ends at ReadyForQuery
    REFUSAL = 4  # gateway refusal: swallow ParseComplete/BindComplete, replace the error
    LOCAL = 5  # answered by the gateway itself (a consumed setting), after what precedes it
    FUNCTION = 6  # fast-path FunctionCall: FunctionCallResponse or ErrorResponse, then its own Z


@dataclass(slots=True)
class Portal:
    sql: str
    statement_name: str
    bind_frame: bytes
    rows_sent: int = 0
    row_limit: RowLimit | None = None
    prepared: Described | None = None  # the Describe answer of its statement
    described: Described = field(default_factory=Described)  # of the portal itself


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
    portal: Portal | None = None
    cancelled: bool = False
    capture: int = 0  # result rows to keep for the hooks (statement.capture_rows)
    result_filter: ResultFilter | None = None
    transformer: RowTransformer | None = None  # for the result now arriving
    transforming: bool = False  # the filter was asked about the result now arriving
    cut: StatementRefused | None = None  # a filter refused the result: its error


class SessionNames:
    """Prepared statements, portals and Describe answers of one session, by name."""

    __slots__ = ("statements", "portals", "described", "descriptions", "answers")

    def __init__(self) -> None:
        self.statements: dict[str, str] = {}
        self.portals: dict[str, Portal] = {}
        # Describe answers (RowDescription or NoData), in order, so that a prepared
        # statement's column names reach hooks even when its Executes come much later.
        self.described: deque[tuple[str | None, Described | None]] = deque()
        self.descriptions: dict[str, bytes | None] = {}
        self.answers: dict[str, Described] = {}  # per statement name, replaced at each Parse

    def parse(self, name: str, sql: str) -> None:
        self.statements[name] = sql
        self.descriptions.pop(name, None)
        self.answers[name] = Described()

    def forget_statement(self, name: str) -> None:
        self.statements.pop(name, None)

    def bind(self, frame: bytes) -> None:
        portal, statement = peek.bind_names(frame)
        self.portals[portal] = Portal(self.statements.get(statement, ""), statement, frame,
                                      prepared=self.answers.get(statement))

    def close(self, frame: bytes) -> None:
        kind, name = peek.close_target(frame)
        if kind == "S":
            self.statements.pop(name, None)
            self.descriptions.pop(name, None)
            self.answers.pop(name, None)
        else:
            self.portals.pop(name, None)

    def describe(self, frame: bytes) -> None:
        kind, name = peek.close_target(frame)  # Describe has Close's layout
        if kind == "S":
            self.described.append((name, self.answers.get(name)))
        else:
            portal = self.portals.get(name)
            self.described.append((None, portal.described if portal else None))

    def description(self, type_byte: int, frame: bytes) -> None:
        """The answer to the oldest outstanding Describe; kept for a described statement."""
        name, answer = self.described.popleft()
        kept = frame if type_byte == B_ROW_DESCRIPTION else None
        if name is not None:
            self.descriptions[name] = kept
        if answer is not None:
            answer.frame = kept


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
