"""Relay playbooks without sockets: scripted frames in, the exact frames out.

Both peers are in-memory streams, so each test states what the client sends,
what the upstream answers, and what each side must receive — including the
refusal mechanics (the upstream raises in place of a refused statement and the
gateway swaps in its own error) and row limits.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway.errors import PolicyDenied, RowLimitExceeded
from gateway.proxy.cancel import UpstreamKey
from gateway.proxy.frames import NOOP_SET_SQL, REFUSAL_SQL
from gateway.proxy.hooks import (
    Hook,
    HookChain,
    Outcome,
    Phase,
    RowLimit,
    SessionInfo,
    Statement,
    Verdict,
)
from gateway.proxy.pipes import Pipe
from gateway.proxy.relay import Relay
from protocols.postgres import messages as m
from protocols.postgres.decoder import decode_backend, decode_frontend
from protocols.postgres.encoder import encode
from protocols.postgres.framing import FrameBuffer

SESSION = SessionInfo("s1", "alice", frozenset({"clinicians"}), "127.0.0.1", 5000, "clinic",
                      "psql", None)


class MemoryTransport(asyncio.Transport):
    """Stands in for a socket's transport; collects what the relay writes and hands what
    the test sends to the relay's protocol."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closed = False
        self.eof = False  # a FIN was sent (write_eof) before the close
        self.reading = True
        self.protocol: asyncio.BaseProtocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol or asyncio.Protocol()  # start-up's, before the relay attached

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def feed(self, data: bytes) -> None:
        assert isinstance(self.protocol, asyncio.Protocol), "the relay has not started"
        self.protocol.data_received(data)

    def feed_eof(self) -> None:
        assert isinstance(self.protocol, asyncio.Protocol)
        self.protocol.eof_received()

    def frames(self, decode: Any) -> list[object]:
        buffer = FrameBuffer()
        buffer.feed(bytes(self.data))
        self.data.clear()
        out = []
        while (frame := buffer.next_frame()) is not None:
            out.append(decode(frame))
        return out


class Recorder(Hook):
    """Refuses SQL containing 'forbidden'; limits rows for SQL containing 'limited'."""

    def __init__(self) -> None:
        self.seen: list[tuple[Phase, str]] = []
        self.outcomes: list[tuple[str, Outcome]] = []

    async def before_statement(self, statement: Statement) -> Verdict | None:
        self.seen.append((statement.phase, statement.sql))
        if "forbidden" in statement.sql:
            return Verdict(refusal=PolicyDenied("phigate: rule r1: no", hint="ask"))
        if "limited" in statement.sql and statement.phase is not Phase.PARSE:
            return Verdict(row_limit=RowLimit(2, RowLimitExceeded("phigate: rule r2: too many")))
        return None

    def after_statement(self, statement: Statement, outcome: Outcome) -> None:
        self.outcomes.append((statement.sql, outcome))


class Playbook:
    def __init__(self, hook: Hook) -> None:
        # The client's side and the upstream's: what the relay writes to each, and where the
        # test feeds what each sends.
        self.to_client = MemoryTransport()
        self.to_upstream = MemoryTransport()
        self.relay = Relay(SESSION, Pipe(self.to_client), Pipe(self.to_upstream),
                           HookChain([hook]), UpstreamKey("127.0.0.1", 1, 1, b"\0\0\0\1"),
                           max_message_size=1 << 20)
        self.task = asyncio.create_task(self.relay.run(), name="playbook")

    async def client(self, *messages: object) -> None:
        await self.client_bytes(b"".join(encode(msg) for msg in messages))  # type: ignore[arg-type]

    async def client_bytes(self, data: bytes) -> None:
        await asyncio.sleep(0)  # the relay's task attaches to the transports first
        self.to_client.feed(data)
        await settle()

    async def upstream(self, *messages: object) -> None:
        await asyncio.sleep(0)
        self.to_upstream.feed(b"".join(encode(msg) for msg in messages))  # type: ignore[arg-type]
        await settle()

    async def finish(self) -> None:
        await asyncio.sleep(0)
        self.to_client.feed_eof()
        await asyncio.wait_for(self.task, 5)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def rows(n: int) -> list[m.DataRow]:
    return [m.DataRow((str(i).encode(),)) for i in range(n)]


READY = m.ReadyForQuery("I")


async def test_simple_query_is_forwarded_verbatim_and_accounted() -> None:
    hook = Recorder()
    play = Playbook(hook)
    await play.client(m.Query("SELECT 1"))
    assert play.to_upstream.frames(decode_frontend) == [m.Query("SELECT 1")]
    answer = [m.RowDescription(()), *rows(1), m.CommandComplete("SELECT 1"), READY]
    await play.upstream(*answer)
    assert play.to_client.frames(decode_backend) == answer
    await play.finish()
    [(sql, outcome)] = hook.outcomes
    assert (sql, outcome.rows, outcome.command_tags) == ("SELECT 1", 1, ["SELECT 1"])


async def test_refused_simple_query_is_raised_upstream_and_replaced() -> None:
    hook = Recorder()
    play = Playbook(hook)
    await play.client(m.Query("DELETE forbidden"))
    assert play.to_upstream.frames(decode_frontend) == [m.Query(REFUSAL_SQL)]
    upstream_error = m.error_response("42501", "phigate: statement refused by the gateway")
    await play.upstream(upstream_error, m.ReadyForQuery("E"))
    error, ready = play.to_client.frames(decode_backend)
    assert isinstance(error, m.ErrorResponse) and error.message == "phigate: rule r1: no"
    assert error.hint == "ask" and error.sqlstate == "42501"
    assert ready == m.ReadyForQuery("E")  # transaction state is the upstream's own
    await play.finish()
    refused = hook.outcomes[0][1]
    assert refused.refused and refused.sqlstate == "42501"


async def test_pipeline_refusal_discards_until_sync_and_keeps_earlier_results() -> None:
    hook = Recorder()
    play = Playbook(hook)
    await play.client(
        m.Parse("", "SELECT ok", ()), m.Bind("", "", (), (), ()), m.Execute("", 0),
        m.Parse("", "forbidden", ()), m.Bind("", "", (), (), ()), m.Execute("", 0),
        m.Sync())
    sent = play.to_upstream.frames(decode_frontend)
    assert [type(f).__name__ for f in sent] == [
        "Parse", "Bind", "Execute",  # the allowed statement
        "Parse", "Bind", "Execute", "Flush",  # the refusal, raised upstream
        "Sync"]  # the denied statement's Bind/Execute were discarded
    assert isinstance(sent[3], m.Parse) and sent[3].sql == REFUSAL_SQL
    await play.upstream(m.ParseComplete(), m.BindComplete(), *rows(1),
                        m.CommandComplete("SELECT 1"),
                        m.ParseComplete(), m.BindComplete(),  # answers to the refusal
                        m.error_response("42501", "raised"), READY)
    received = play.to_client.frames(decode_backend)
    assert [type(f).__name__ for f in received] == [
        "ParseComplete", "BindComplete", "DataRow", "CommandComplete", "ErrorResponse",
        "ReadyForQuery"]
    assert isinstance(received[4], m.ErrorResponse)
    assert received[4].message == "phigate: rule r1: no"
    await play.finish()


async def test_row_limit_forwards_at_most_max_rows_then_the_error() -> None:
    hook = Recorder()
    play = Playbook(hook)
    await play.client(m.Query("SELECT limited"))
    await play.upstream(m.RowDescription(()), *rows(5))
    await play.upstream(m.error_response("57014", "canceling statement due to user request"),
                        READY)
    received = play.to_client.frames(decode_backend)
    assert [type(f).__name__ for f in received] == [
        "RowDescription", "DataRow", "DataRow", "ErrorResponse", "ReadyForQuery"]
    assert isinstance(received[3], m.ErrorResponse) and received[3].sqlstate == "54000"
    await play.finish()
    outcome = hook.outcomes[0][1]
    assert outcome.rows == 2 and outcome.row_limit_hit and outcome.sqlstate == "54000"


async def test_error_in_batch_skips_later_executes_until_sync() -> None:
    hook = Recorder()
    play = Playbook(hook)
    await play.client(
        m.Parse("a", "SELECT 1/0", ()), m.Bind("", "a", (), (), ()), m.Execute("", 0),
        m.Parse("b", "SELECT 2", ()), m.Bind("", "b", (), (), ()), m.Execute("", 0),
        m.Sync())
    await play.upstream(m.ParseComplete(), m.BindComplete(),
                        m.error_response("22012", "division by zero"), READY)
    await play.finish()
    assert [(sql, o.sqlstate) for sql, o in hook.outcomes] == [
        ("SELECT 1/0", "22012"), ("SELECT 2", "25P02")]


async def test_client_garbage_ends_the_session_with_a_protocol_error() -> None:
    play = Playbook(Recorder())
    await play.client_bytes(b"?\x00\x00\x00\x04")
    await asyncio.wait_for(play.task, 5)
    [error] = play.to_client.frames(decode_backend)
    assert isinstance(error, m.ErrorResponse) and error.sqlstate == "08P01"
    assert error.severity == "FATAL"


class RefusesCalls(Recorder):
    """Refuses every fast-path call, as a policy would one it does not allow."""

    async def before_statement(self, statement: Statement) -> Verdict | None:
        self.seen.append((statement.phase, statement.sql))
        if statement.phase is Phase.FUNCTION:
            return Verdict(refusal=PolicyDenied("phigate: rule r3: no calls"))
        return None


def call(oid: int = 955) -> m.FunctionCall:
    return m.FunctionCall(function_oid=oid, arg_formats=(1,), args=(b"\0\0\0\1",),
                          result_format=1)


async def test_function_call_is_answered_with_its_own_ready_for_query() -> None:
    hook = Recorder()
    play = Playbook(hook)
    await play.client(call())
    assert play.to_upstream.frames(decode_frontend) == [call()]
    await play.upstream(m.FunctionCallResponse(b"data"), READY)
    assert play.to_client.frames(decode_backend) == [m.FunctionCallResponse(b"data"), READY]
    await play.finish()
    [(_, outcome)] = hook.outcomes
    assert outcome.rows == 1 and outcome.bytes_to_client > 4 and outcome.sqlstate is None


async def test_refused_function_call_gets_error_and_ready_and_the_session_goes_on() -> None:
    hook = RefusesCalls()
    play = Playbook(hook)
    await play.client(call())
    assert play.to_upstream.frames(decode_frontend) == [m.Query(REFUSAL_SQL)]
    await play.upstream(m.error_response("42501", "raised"), m.ReadyForQuery("E"))
    error, ready = play.to_client.frames(decode_backend)
    assert isinstance(error, m.ErrorResponse) and error.message == "phigate: rule r3: no calls"
    assert ready == m.ReadyForQuery("E")  # inside a transaction a failed call aborts it
    await play.client(m.Query("ROLLBACK"))  # not discarded: no Sync is owed after a call
    assert play.to_upstream.frames(decode_frontend) == [m.Query("ROLLBACK")]
    await play.finish()
    assert hook.outcomes[0][1].refused


async def test_failed_function_call_does_not_skip_what_follows_it() -> None:
    hook = Recorder()
    play = Playbook(hook)
    await play.client(call(1), m.Query("SELECT 2"))
    await play.upstream(m.error_response("42883", "function 1 does not exist"), READY,
                        *rows(1), m.CommandComplete("SELECT 1"), READY)
    await play.finish()
    assert [o.sqlstate for _, o in hook.outcomes] == ["42883", None]
    assert hook.outcomes[1][1].rows == 1


async def test_stall_is_reported_only_when_nothing_is_owed_by_the_client() -> None:
    play = Playbook(Recorder())
    relay = play.relay
    later = time.monotonic() + 10
    await play.client(m.Query("SELECT 1"))
    state = relay.stall(later, 5)
    assert state is not None and state["pending"] == ["query:1"]
    assert relay.stall(time.monotonic(), 5) is None  # not overdue yet
    await play.upstream(m.CommandComplete("SELECT 0"), READY)
    assert relay.stall(later, 5) is None  # answered: nothing owed
    await play.client(m.Parse("", "SELECT 1", ()), m.Bind("", "", (), (), ()),
                      m.Execute("", 0))
    assert relay.stall(later, 5) is None  # the client still owes its Sync
    await play.client(m.Sync())
    assert relay.stall(later, 5) is not None
    await play.upstream(m.ParseComplete(), m.BindComplete(), m.CommandComplete("SELECT 0"),
                        READY)
    await play.client(m.Query("COPY t FROM STDIN"))
    await play.upstream(m.CopyInResponse(0, (0,)))
    assert relay.stall(later, 5) is None  # the COPY waits for the client's data
    await play.finish()


class ConsumesSettings(Recorder):
    """Consumes 'SET phigate.reason' strings entirely, as the policy hook does."""

    async def before_statement(self, statement: Statement) -> Verdict | None:
        self.seen.append((statement.phase, statement.sql))
        if statement.sql.startswith("SET phigate.reason"):
            return Verdict(rewrite_sql="", local_tag="SET")
        return None


async def test_a_consumed_setting_is_answered_locally_when_nothing_is_in_flight() -> None:
    play = Playbook(ConsumesSettings())
    await play.client(m.Query("SET phigate.reason = 'x'"))
    assert play.to_upstream.frames(decode_frontend) == []
    assert play.to_client.frames(decode_backend) == [m.CommandComplete("SET"), READY]
    await play.finish()


async def test_a_consumed_setting_behind_an_unsynced_batch_is_answered_by_the_upstream() -> None:
    hook = ConsumesSettings()
    play = Playbook(hook)
    await play.client(m.Parse("", "SELECT 1", ()), m.Bind("", "", (), (), ()), m.Execute("", 0),
                      m.Query("SET phigate.reason = 'x'"))
    sent = play.to_upstream.frames(decode_frontend)
    assert sent[-1] == m.Query(NOOP_SET_SQL)  # the upstream answers in order, flushing the batch
    answer = [m.ParseComplete(), m.BindComplete(), *rows(1), m.CommandComplete("SELECT 1"),
              m.CommandComplete("SET"), READY]
    await play.upstream(*answer)
    assert play.to_client.frames(decode_backend) == answer
    await play.finish()
    assert [o.command_tags for _, o in hook.outcomes] == [["SELECT 1"], ["SET"]]
