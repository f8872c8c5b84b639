"""What a recording holds: session metadata, statements, results, session end.

Two halves, one schema. On the gateway, the hook turns each Statement and
Outcome into a positional record plus the raw wire frames it owns
(RowDescription, DataRows or CopyData, notices, the error, the Bind), and
:func:`encode_events` packs queued records into chunk plaintexts: a JSON list
of the records followed by their frames. Raw frames keep the hot path free of
decoding and keep exactly what the client was sent. On the auditor's side,
:class:`EventDecoder` turns chunk plaintexts back into the typed events below,
decoding frames into text.

Record layout (``t``: microseconds since the session started, monotonic; so is
``duration``)::

    ["S", t, {session metadata}]
    ["Q", t, n, phase, sql, statement_name, portal, denial|null, policy|null, nframes]
    ["R", t, n, rows, bytes, duration, tags, sqlstate, error, flags, copy, copy_in_bytes,
          ndesc, nsample, nnotices, nerror, ncopy_in]
    ["E", t, {end, statements, refused, rows}]
    ["N", t, text]                       a note from the recorder itself
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeAlias

from protocols.postgres import messages as m
from protocols.postgres.decoder import decode_backend, decode_frontend
from protocols.postgres.errors import ProtocolError

from ..journal.hook import POLICY_TAG
from ..proxy.hooks import Outcome, Phase, SessionInfo, SessionSummary, Statement
from .errors import RecordingTampered
from .values import render

SESSION, STATEMENT, RESULT, END, NOTE = "S", "Q", "R", "E", "N"
JOURNAL_FIELD = "recording"  # the session_end field with the recording's digest
_REFUSED, _SUSPENDED, _ROW_LIMIT = 1, 2, 4
_US = 1_000_000  # times and durations are recorded as integer microseconds
_PHASES = {phase: phase.value for phase in Phase}  # Enum.value is a slow descriptor
_U32 = struct.Struct(">I")
_FRAME_LENGTH = struct.Struct(">I")
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)

Header: TypeAlias = tuple[Any, ...]  # one record, JSON-ready
# What the hook queues: a record and the raw frames it owns. Tuples of plain values only, so
# the garbage collector stops tracking them at once and a second of queued statements costs
# it nothing (holding the relay's Statement and Outcome objects did).
Queued: TypeAlias = tuple[Header, tuple[bytes, ...]]


# ---------------------------------------------------------------- encoding (gateway side)


def session_record(t: float, info: SessionInfo, capture_rows: int) -> Queued:
    return (SESSION, int(t * _US), {
        "session": info.session_id, "identity": info.identity, "groups": sorted(info.groups),
        "client": f"{info.client_ip}:{info.client_port}", "database": info.database,
        "application_name": info.application_name, "tls": info.tls, "reason": info.reason,
        "started_at": info.started_at, "capture_rows": capture_rows,
    }), ()


def end_record(t: float, summary: SessionSummary) -> Queued:
    return (END, int(t * _US), {"end": summary.end.value, "statements": summary.statements,
                                "refused": summary.refused, "rows": summary.rows}), ()


def statement_record(t: float, statement: Statement) -> Queued:
    """Taken in ``before_statement``, once the hooks before the recorder have decided."""
    refusal = statement.verdict.refusal
    denial = policy = None
    if refusal is not None:
        denial = (refusal.sqlstate, refusal.message, refusal.hint, refusal.detail)
        policy = statement.tags.get(POLICY_TAG)
    raw = statement.bind_frame or (statement.function_call.raw if statement.function_call
                                   else None)
    return (STATEMENT, int(t * _US), statement.number, _PHASES[statement.phase], statement.sql,
            statement.statement_name, statement.portal_name, denial,
            policy if isinstance(policy, dict) else None, 1 if raw else 0), \
        (raw,) if raw else ()


def result_record(t: float, number: int, outcome: Outcome) -> Queued:
    """Taken in ``after_statement``: the outcome is complete."""
    flags = ((_REFUSED if outcome.refused else 0) | (_SUSPENDED if outcome.suspended else 0)
             | (_ROW_LIMIT if outcome.row_limit_hit else 0))
    description, sample, notices = outcome.row_description, outcome.sample, outcome.notices
    frames: list[bytes] = [description] if description is not None else []
    if sample:
        frames += sample
    if notices:
        frames += notices
    # After a row-limit cut the client saw the gateway's error, not the upstream's cancel.
    error = outcome.error_frame if not outcome.row_limit_hit else None
    if error is not None:
        frames.append(error)
    copy_in = outcome.copy_in_sample
    if copy_in:
        frames += copy_in
    return (RESULT, int(t * _US), number, outcome.rows, outcome.bytes_to_client,
            int(outcome.duration_s * _US), tuple(outcome.command_tags), outcome.sqlstate,
            outcome.error_message, flags, outcome.copy_direction, outcome.copy_in_bytes,
            0 if description is None else 1, len(sample) if sample else 0, len(notices),
            0 if error is None else 1, len(copy_in) if copy_in else 0), tuple(frames)


def encode_events(events: Sequence[Queued], limit: int) -> Iterator[bytes]:
    """Chunk plaintexts for ``events``, a new one started once about ``limit`` bytes."""
    headers: list[Header] = []
    frames: list[bytes] = []
    size = 0
    for header, owned in events:
        headers.append(header)
        size += 128
        if owned:
            frames.extend(owned)
            size += sum(map(len, owned))
        if size >= limit:
            yield _pack(headers, frames)
            headers, frames, size = [], [], 0
    if headers:
        yield _pack(headers, frames)


def _pack(records: list[Header], frames: list[bytes]) -> bytes:
    head = _JSON.encode(records).encode("ascii")  # ensure_ascii: any text survives
    return b"".join((_U32.pack(len(head)), head, *frames))


# ---------------------------------------------------------------- the decoded events


@dataclass(frozen=True, slots=True)
class Message:
    """An ErrorResponse or NoticeResponse, as psql prints it."""

    severity: str
    sqlstate: str | None
    message: str
    detail: str | None = None
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class Denial:
    sqlstate: str
    message: str
    hint: str | None
    detail: str | None
    rules: tuple[str, ...]
    decision: str | None


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    format: int


@dataclass(frozen=True, slots=True)
class CopyTransfer:
    direction: str  # "in" (client → database) or "out"
    bytes: int
    lines: tuple[str, ...]  # captured content, decoded as text, one entry per CopyData


@dataclass(frozen=True, slots=True)
class SessionStarted:
    t: float
    session: str
    identity: str
    groups: tuple[str, ...]
    client: str
    database: str
    application_name: str
    tls: str | None
    reason: str | None
    started_at: float
    capture_rows: int


@dataclass(frozen=True, slots=True)
class StatementSent:
    t: float
    n: int
    phase: str
    sql: str
    statement_name: str
    parameters: tuple[str | None, ...]
    denial: Denial | None


@dataclass(frozen=True, slots=True)
class ResultReceived:
    t: float
    n: int
    rows: int
    bytes: int
    duration_s: float
    tags: tuple[str, ...]
    error: Message | None
    notices: tuple[Message, ...]
    columns: tuple[Column, ...] | None  # None: the result's RowDescription was not seen
    sample: tuple[tuple[str | None, ...], ...]
    copy: CopyTransfer | None
    refused: bool
    suspended: bool
    row_limit_hit: bool


@dataclass(frozen=True, slots=True)
class SessionEnded:
    t: float
    end: str
    statements: int
    refused: int
    rows: int


@dataclass(frozen=True, slots=True)
class Note:
    t: float
    text: str


Event: TypeAlias = SessionStarted | StatementSent | ResultReceived | SessionEnded | Note
_KIND_NAMES = {SessionStarted: "session", StatementSent: "statement",
               ResultReceived: "result", SessionEnded: "end", Note: "note"}


def to_json(event: Event) -> dict[str, Any]:
    """A JSON-ready dict with ``type`` first, for ``phigate replay --json``."""
    return {"type": _KIND_NAMES[type(event)], **asdict(event)}


# ---------------------------------------------------------------- decoding (auditor side)


class EventDecoder:
    """Chunk plaintexts → events, in order. Remembers each Execute's result formats from its
    Bind, for results whose RowDescription came earlier (a Describe of the statement)."""

    def __init__(self) -> None:
        self._result_formats: dict[int, tuple[int, ...]] = {}

    def decode(self, plaintext: bytes) -> list[Event]:
        try:
            (length,) = _U32.unpack_from(plaintext)
            records = json.loads(plaintext[4:4 + length])
            frames = _split_frames(plaintext, 4 + length)
            return [self._event(record, frames) for record in records]
        except (ValueError, TypeError, IndexError, KeyError, struct.error, ProtocolError) as e:
            # Authenticated yet undecodable: written by a different program, not edited.
            raise RecordingTampered(f"a chunk holds undecodable events: {e}") from e

    def _event(self, record: list[Any], frames: Iterator[bytes]) -> Event:
        kind, t = record[0], record[1] / _US
        if kind == STATEMENT:
            return self._statement(t, record, frames)
        if kind == RESULT:
            return self._result(t, record, frames)
        if kind == SESSION:
            f = record[2]
            return SessionStarted(t, f["session"], f["identity"], tuple(f["groups"]),
                                  f["client"], f["database"], f["application_name"], f["tls"],
                                  f["reason"], float(f["started_at"]), int(f["capture_rows"]))
        if kind == END:
            f = record[2]
            return SessionEnded(t, f["end"], f["statements"], f["refused"], f["rows"])
        if kind == NOTE:
            return Note(t, str(record[2]))
        raise ValueError(f"unknown record kind {kind!r}")

    def _statement(self, t: float, record: list[Any], frames: Iterator[bytes]) -> StatementSent:
        _, _, n, phase, sql, name, _portal, denial, policy, nframes = record
        parameters: tuple[str | None, ...] = ()
        if nframes:
            parameters = self._parameters(n, next(frames))
        refused = None
        if denial is not None:
            policy = policy or {}
            rules = policy.get("rules") or ()
            refused = Denial(denial[0], denial[1], denial[2], denial[3],
                             tuple(str(r) for r in rules), policy.get("decision"))
        return StatementSent(t, n, phase, sql, name, parameters, refused)

    def _parameters(self, n: int, frame: bytes) -> tuple[str | None, ...]:
        message = decode_frontend(frame)
        if isinstance(message, m.Bind):
            self._result_formats[n] = message.result_formats
            return tuple(render(value, 0, message.param_format(i))
                         for i, value in enumerate(message.params))
        if isinstance(message, m.FunctionCall):
            return tuple(render(value, 0, _format(message.arg_formats, i))
                         for i, value in enumerate(message.args))
        return ()

    def _result(self, t: float, record: list[Any], frames: Iterator[bytes]) -> ResultReceived:
        (_, _, n, rows, size, duration, tags, sqlstate, error_text, flags, copy, copy_in_bytes,
         ndesc, nsample, nnotices, nerror, ncopy_in) = record
        description = _backend(next(frames), m.RowDescription) if ndesc else None
        sample = [next(frames) for _ in range(nsample)]
        notices = tuple(_message(_backend(next(frames), m.NoticeResponse))
                        for _ in range(nnotices))
        error = _message(_backend(next(frames), m.ErrorResponse)) if nerror else None
        copy_in = [next(frames) for _ in range(ncopy_in)]
        if error is None and sqlstate is not None:
            error = Message("ERROR", sqlstate, error_text or "")
        formats = self._result_formats.pop(n, None)
        columns, rows_text, transfer = _result_body(description, sample, formats, copy,
                                                    copy_in, copy_in_bytes, size)
        return ResultReceived(t, n, rows, size, duration / _US, tuple(tags), error, notices,
                              columns, rows_text, transfer, bool(flags & _REFUSED),
                              bool(flags & _SUSPENDED), bool(flags & _ROW_LIMIT))


def _result_body(description: m.RowDescription | None, sample: list[bytes],
                 formats: Sequence[int] | None, copy: str | None, copy_in: list[bytes],
                 copy_in_bytes: int, size: int
                 ) -> tuple[tuple[Column, ...] | None, tuple[tuple[str | None, ...], ...],
                            CopyTransfer | None]:
    if copy is not None:
        frames = copy_in if copy == "in" else sample
        lines = tuple(decode_backend(f).data.decode("utf-8", "replace")  # type: ignore[union-attr]
                      for f in frames)
        return None, (), CopyTransfer(copy, copy_in_bytes if copy == "in" else size, lines)
    rows = [_backend(f, m.DataRow).values for f in sample]
    if description is not None:
        # An Execute's values come in the formats its Bind asked for; a RowDescription from
        # an earlier Describe of the statement cannot know them and says text.
        columns = tuple(Column(f.name, f.type_oid,
                               f.format if formats is None else _format(formats, i))
                        for i, f in enumerate(description.fields))
    elif rows:  # described earlier (Describe of the statement): names and types unknown
        width = len(rows[0])
        columns = tuple(Column(f"column{i + 1}", 0, _format(formats or (), i))
                        for i in range(width))
    else:
        return None, (), None
    text = tuple(tuple(render(v, c.type_oid, c.format)
                       for v, c in zip(row, columns, strict=False)) for row in rows)
    return columns, text, None


def _format(formats: Sequence[int], index: int) -> int:
    if not formats:
        return 0
    return formats[0] if len(formats) == 1 else formats[index]


def _message(message: m.ErrorResponse | m.NoticeResponse) -> Message:
    return Message(message.severity, message.sqlstate or None, message.message,
                   message.detail, message.hint)


def _backend(frame: bytes, kind: type[Any]) -> Any:
    message = decode_backend(frame)
    if not isinstance(message, kind):
        raise ValueError(f"expected {kind.__name__}, found {type(message).__name__}")
    return message


def _split_frames(data: bytes, offset: int) -> Iterator[bytes]:
    while offset < len(data):
        (length,) = _FRAME_LENGTH.unpack_from(data, offset + 1)
        end = offset + 1 + length
        if end > len(data) or length < 4:
            raise ValueError("a frame runs past the end of its chunk")
        yield data[offset:end]
        offset = end
