"""Events survive encoding on the gateway and decoding for replay, frames turned into text."""

from __future__ import annotations

from gateway.errors import PolicyDenied
from gateway.proxy.hooks import Outcome, Phase, SessionSummary, Statement, Verdict
from gateway.recording.events import (
    EventDecoder,
    Queued,
    ResultReceived,
    SessionEnded,
    SessionStarted,
    StatementSent,
    encode_events,
    end_record,
    result_record,
    session_record,
    statement_record,
)
from protocols.postgres import messages as m
from protocols.postgres.encoder import encode

from .conftest import session_info

INFO = session_info()


def decode_all(events: list[Queued], limit: int = 1 << 20) -> list[object]:
    decoder = EventDecoder()
    return [e for plaintext in encode_events(events, limit) for e in decoder.decode(plaintext)]


def description(*columns: tuple[str, int]) -> bytes:
    return encode(m.RowDescription(tuple(m.FieldDescription(name, type_oid=oid)
                                         for name, oid in columns)))


def row(*values: bytes | None) -> bytes:
    return encode(m.DataRow(values))


def test_a_session_round_trips() -> None:
    select = Statement(INFO, 1, Phase.SIMPLE, "SELECT id, name FROM t;")
    outcome = Outcome(rows=4, bytes_to_client=99, duration_s=0.0015, command_tags=["SELECT 4"],
                      row_description=description(("id", 23), ("name", 25)),
                      sample=[row(b"1", b"ann"), row(b"2", None)],
                      notices=[encode(m.error_response("01000", "careful", notice=True))])
    summary = SessionSummary(statements=1, rows=4)
    events = decode_all([session_record(0.0, INFO, 2), statement_record(0.25, select),
                         result_record(0.2515, 1, outcome), end_record(1.5, summary)])
    started, sent, result, ended = events
    assert isinstance(started, SessionStarted) and started.identity == "alice"
    assert started.groups == ("clinicians",) and started.capture_rows == 2
    assert isinstance(sent, StatementSent) and sent.sql == "SELECT id, name FROM t;"
    assert sent.t == 0.25 and sent.denial is None
    assert isinstance(result, ResultReceived)
    assert [c.name for c in result.columns or ()] == ["id", "name"]
    assert result.sample == (("1", "ann"), ("2", None))
    assert result.rows == 4 and result.duration_s == 0.0015 and result.tags == ("SELECT 4",)
    assert result.notices[0].message == "careful" and result.notices[0].severity == "NOTICE"
    assert isinstance(ended, SessionEnded) and ended.end == "client_disconnect"


def test_a_denial_keeps_its_rule() -> None:
    statement = Statement(INFO, 2, Phase.SIMPLE, "DELETE FROM patients;")
    statement.verdict = Verdict(refusal=PolicyDenied("phigate: rule r1 denies delete", hint="h"))
    statement.tags["policy"] = {"decision": "deny", "rules": ["r1"]}
    sent, result = decode_all([statement_record(0.0, statement),
                               result_record(0.0, 2, Outcome(refused=True))])
    assert isinstance(sent, StatementSent) and sent.denial is not None
    assert sent.denial.rules == ("r1",) and sent.denial.sqlstate == "42501"
    assert sent.denial.hint == "h"
    assert isinstance(result, ResultReceived) and result.refused


def test_execute_values_are_decoded_in_the_formats_their_bind_asked_for() -> None:
    bind = encode(m.Bind(portal="", statement="s1", param_formats=(0, 1),
                         params=(b"Nguyen", b"\x00\x00\x00\x07"), result_formats=(1, 0)))
    statement = Statement(INFO, 3, Phase.EXECUTE, "SELECT id, name FROM t WHERE a = $1 AND b = $2",
                          statement_name="s1", bind_frame=bind)
    described = Outcome(rows=1, command_tags=["SELECT 1"],
                        row_description=description(("id", 23), ("name", 25)),
                        sample=[row(b"\x00\x00\x00\x2a", b"ann")])
    undescribed = Outcome(rows=1, command_tags=["SELECT 1"], sample=[row(b"\x00\x2a", b"bo")])
    sent, first, _, second = decode_all([
        statement_record(0.0, statement), result_record(0.0, 3, described),
        statement_record(0.0, statement), result_record(0.0, 3, undescribed)])
    assert isinstance(sent, StatementSent) and sent.parameters == ("Nguyen", "\\x00000007")
    assert isinstance(first, ResultReceived) and first.sample == (("42", "ann"),)
    assert isinstance(second, ResultReceived)
    assert [c.name for c in second.columns or ()] == ["column1", "column2"]
    assert second.sample == (("\\x002a", "bo"),)  # binary, type unknown: the bytes, in hex


def test_errors_and_copy_both_ways() -> None:
    failing = Outcome(sqlstate="22012", error_message="division by zero",
                      error_frame=encode(m.error_response("22012", "division by zero",
                                                          detail="d", hint="h")))
    copy_out = Outcome(rows=3, bytes_to_client=30, copy_direction="out", command_tags=["COPY 3"],
                       sample=[encode(m.CopyData(b"1\ta\n")), encode(m.CopyData(b"2\tb\n"))])
    copy_in = Outcome(copy_direction="in", copy_in_bytes=8, command_tags=["COPY 2"],
                      copy_in_sample=[encode(m.CopyData(b"1\tx\n2\ty\n"))])
    limited = Outcome(rows=5, row_limit_hit=True, sqlstate="54000", error_message="cut",
                      error_frame=encode(m.error_response("57014", "canceling statement")))
    records = [result_record(0.0, n, o)
               for n, o in enumerate((failing, copy_out, copy_in, limited))]
    error, out, into, cut = (e for e in decode_all(records) if isinstance(e, ResultReceived))
    assert error.error is not None and (error.error.detail, error.error.hint) == ("d", "h")
    assert out.copy is not None and out.copy.lines == ("1\ta\n", "2\tb\n") and out.rows == 3
    assert into.copy is not None and into.copy.direction == "in" and into.copy.bytes == 8
    # After a row-limit cut the client saw the gateway's error, not the upstream's cancel.
    assert cut.error is not None and cut.error.sqlstate == "54000" and cut.row_limit_hit


def test_many_events_are_cut_into_bounded_chunks() -> None:
    outcome = Outcome(rows=1, row_description=description(("v", 25)), sample=[row(b"x" * 1000)])
    events = [result_record(i / 10, i, outcome) for i in range(200)]
    plaintexts = list(encode_events(events, 16 * 1024))
    assert len(plaintexts) > 5 and all(len(p) < 20 * 1024 for p in plaintexts)
    decoder = EventDecoder()
    assert sum(len(decoder.decode(p)) for p in plaintexts) == 200
