"""Byte limits in the relay: DataRow and CopyData payloads counted, cut like max_rows."""

from __future__ import annotations

from gateway.errors import RowLimitExceeded
from gateway.proxy.hooks import Hook, Outcome, Phase, RowLimit, Statement, Verdict
from protocols.postgres import messages as m
from protocols.postgres.decoder import decode_backend

from .test_relay import READY, Playbook

ROW = m.DataRow((b"0123456789",))  # payload: 2 (count) + 4 (length) + 10 = 16 bytes


class ByteLimiter(Hook):
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.outcomes: list[Outcome] = []

    async def before_statement(self, statement: Statement) -> Verdict | None:
        if statement.phase is Phase.PARSE:
            return None
        return Verdict(row_limit=RowLimit(
            1000, RowLimitExceeded("phigate: rule r: too many rows"), max_bytes=self.max_bytes,
            byte_error=RowLimitExceeded("phigate: rule r: result exceeds max_bytes (40)")))

    def after_statement(self, statement: Statement, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


async def test_byte_limit_forwards_nothing_past_the_limit() -> None:
    hook = ByteLimiter(40)
    play = Playbook(hook)
    await play.client(m.Query("SELECT x"))
    await play.upstream(m.RowDescription(()), ROW, ROW, ROW, ROW)
    await play.upstream(m.error_response("57014", "canceling statement"), READY)
    received = play.to_client.frames(decode_backend)
    assert [type(f).__name__ for f in received] == [
        "RowDescription", "DataRow", "DataRow", "ErrorResponse", "ReadyForQuery"]
    error = received[3]
    assert isinstance(error, m.ErrorResponse) and error.sqlstate == "54000"
    assert "max_bytes" in error.message
    await play.finish()
    outcome = hook.outcomes[0]
    assert outcome.rows == 2 and outcome.byte_limit_hit and outcome.row_limit_hit
    assert outcome.bytes_to_client == 2 * (16 + 5)  # what was sent, frame headers included
    assert outcome.sqlstate == "54000" and "max_bytes" in (outcome.error_message or "")


async def test_copy_data_counts_like_rows() -> None:
    hook = ByteLimiter(40)
    play = Playbook(hook)
    await play.client(m.Query("COPY x TO STDOUT"))
    chunk = m.CopyData(b"x" * 30)
    await play.upstream(m.CopyOutResponse(0, ()), chunk, chunk)
    await play.upstream(m.error_response("57014", "canceling statement"), READY)
    received = play.to_client.frames(decode_backend)
    assert [type(f).__name__ for f in received] == [
        "CopyOutResponse", "CopyData", "ErrorResponse", "ReadyForQuery"]
    await play.finish()
    assert hook.outcomes[0].byte_limit_hit and hook.outcomes[0].rows == 1


async def test_exactly_at_the_limit_is_not_cut() -> None:
    hook = ByteLimiter(32)
    play = Playbook(hook)
    await play.client(m.Query("SELECT x"))
    await play.upstream(m.RowDescription(()), ROW, ROW, m.CommandComplete("SELECT 2"), READY)
    received = play.to_client.frames(decode_backend)
    assert [type(f).__name__ for f in received] == [
        "RowDescription", "DataRow", "DataRow", "CommandComplete", "ReadyForQuery"]
    await play.finish()
    assert not hook.outcomes[0].byte_limit_hit
