"""The transcript: psql's look, the auditor's extras, pacing, and loud failures."""

from __future__ import annotations

import io
import json
from pathlib import Path

from gateway.recording.binding import Check, SessionFacts, Status
from gateway.recording.events import (
    Column,
    CopyTransfer,
    Denial,
    Message,
    ResultReceived,
    SessionEnded,
    SessionStarted,
    StatementSent,
)
from gateway.recording.format import Sealer, new_header
from gateway.recording.keys import MasterKey
from gateway.recording.reader import RecordingReader
from gateway.recording.replay import MAX_GAP_S, Pacer, ReplayOptions, Style, Transcript, replay

START = SessionStarted(0.0, "0123456789abcdef", "alice", ("clinicians",), "10.0.0.5:5000",
                       "clinic", "psql", None, None, 1_790_000_000.0, 100)


def result(**fields: object) -> ResultReceived:
    base: dict[str, object] = dict(t=1.0, n=1, rows=0, bytes=0, duration_s=0.001, tags=(),
                                   error=None, notices=(), columns=None, sample=(), copy=None,
                                   refused=False, suspended=False, row_limit_hit=False)
    return ResultReceived(**{**base, **fields})  # type: ignore[arg-type]


def render(*events: object, width: int | None = None, color: bool = False) -> str:
    out = io.StringIO()
    transcript = Transcript(out, Style(color), width)
    for event in (START, *events):
        transcript.event(event)  # type: ignore[arg-type]
    return out.getvalue()


def test_a_capped_result_says_so() -> None:
    columns = (Column("id", 23, 0), Column("name", 25, 0))
    text = render(StatementSent(1.0, 1, "simple", "SELECT id, name FROM p;", "", (), None),
                  result(rows=25_000, columns=columns, sample=(("1", "ann"), ("2", None)),
                         tags=("SELECT 25000",)))
    assert "[14:13:21] clinic=> SELECT id, name FROM p;" in text
    assert " id | name \n----+------\n  1 | ann\n  2 | \n(showing 2 of 25 000 rows)\n" in text


def test_denials_errors_notices_copy_and_parameters() -> None:
    denial = Denial("42501", "phigate: rule no-delete denies delete", "ask", None,
                    ("no-delete",), "deny")
    text = render(
        StatementSent(1.0, 1, "simple", "DELETE FROM p;", "", (), denial),
        result(refused=True),
        StatementSent(2.0, 2, "execute", "SELECT $1", "s", ("O'Brien", None), None),
        result(notices=(Message("WARNING", "01000", "careful"),),
               error=Message("ERROR", "22012", "division by zero", "d", None)),
        result(copy=CopyTransfer("in", 12, ("1\ta\n",)), tags=("COPY 1",)),
        SessionEnded(9.0, "client_terminate", 2, 1, 0))
    assert ("ERROR:  phigate: rule no-delete denies delete\nHINT:  ask\n"
            "*** DENIED (42501) by no-delete ***\n") in text
    assert "-- parameters: $1 = 'O''Brien', $2 = NULL\n" in text
    assert "WARNING:  careful\nERROR:  division by zero\nDETAIL:  d\n" in text
    assert "-- COPY data sent by the client (12 bytes):\n1\ta\nCOPY 1\n" in text
    assert "(client_terminate) after 9.0 s: 2 statements, 1 refused" in text


def test_colour_only_when_asked() -> None:
    assert "\x1b[" not in render(result(error=Message("ERROR", "1", "x")))
    assert "\x1b[31mERROR:  x\x1b[0m" in render(result(error=Message("ERROR", "1", "x")),
                                                color=True)


def test_wide_values_are_cut_to_the_width() -> None:
    columns = (Column("note", 25, 0),)
    text = render(result(rows=1, columns=columns, sample=(("x" * 200,),)), width=40)
    assert max(len(line) for line in text.splitlines() if "xxx" in line) <= 40
    assert "…" in text


def test_pacing_caps_idle_gaps() -> None:
    slept: list[float] = []
    pacer = Pacer(ReplayOptions(speed=2.0), slept.append)
    for t in (0.0, 1.0, 61.0, 61.5):
        pacer.wait(t)
    assert slept == [0.5, MAX_GAP_S, 0.25]
    instant: list[float] = []
    quick = Pacer(ReplayOptions(instant=True), instant.append)
    quick.wait(0.0)
    quick.wait(10.0)
    assert instant == []


def test_an_edited_chunk_stops_the_replay_loudly(tmp_path: Path) -> None:
    from gateway.proxy.hooks import SessionSummary
    from gateway.recording.events import encode_events, end_record, session_record

    from .conftest import session_info

    key = MasterKey.from_bytes(bytes(32))
    header, data_key = new_header("0123456789abcdef", 0.0, key)
    sealer = Sealer(header, data_key)
    first = sealer.seal(next(encode_events([session_record(0.0, session_info(), 1)], 1 << 20)))
    last = bytearray(sealer.seal(next(encode_events([end_record(1.0, SessionSummary())],
                                                    1 << 20)), final=True))
    last[-1] ^= 1
    path = tmp_path / "r.phirec"
    path.write_bytes(header + first + bytes(last))
    facts = SessionFacts("0123456789abcdef")
    out = io.StringIO()
    with RecordingReader(path, key) as reader:
        code = replay(reader, facts, Check(facts.session, Status.MISMATCH, "edited"),
                      ReplayOptions(instant=True), out)
    assert code == 1
    text = out.getvalue()
    assert "RECORDING DOES NOT MATCH THE JOURNAL" in text
    assert "-- session 0123456789abcdef: alice" in text  # what authenticated is shown
    assert "RECORDING FAILS AUTHENTICATION" in text and "chunk 1" in text
    out = io.StringIO()
    with RecordingReader(path, key) as reader:
        replay(reader, facts, Check(facts.session, Status.MISMATCH, "edited"),
               ReplayOptions(json=True), out)
    kinds = [json.loads(line)["type"] for line in out.getvalue().splitlines()]
    assert kinds == ["verification", "session", "tampered"]
