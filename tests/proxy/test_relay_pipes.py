"""The relay on transports: hooks that answer at once or wait, backpressure, held answers.

Playbooks (``test_relay.Playbook``): in-memory transports stand in for both sockets, so each
test states exactly what either side sent and when, and what reached the other.
"""

from __future__ import annotations

import asyncio

from gateway.errors import JournalWriteFailed
from gateway.proxy.hooks import EndReason, Hook, Statement, Verdict
from protocols.postgres import messages as m
from protocols.postgres.decoder import decode_backend, decode_frontend

from .test_relay import READY, Playbook, rows


class Gate(Hook):
    """Waits for the test to open the gate before each statement whose SQL says 'wait'."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.seen: list[str] = []

    async def before_statement(self, statement: Statement) -> Verdict | None:
        self.seen.append(statement.sql)
        if "wait" in statement.sql:
            await self.gate.wait()
        return None


class Holds(Hook):
    """Marks every statement read-only with an entry the test makes durable (or fails)."""

    def __init__(self) -> None:
        self.entries: list[asyncio.Future[int]] = []

    async def before_statement(self, statement: Statement) -> Verdict | None:
        entry: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.entries.append(entry)
        statement.read_only = True
        statement.durable = entry
        return None


async def test_a_waiting_hook_keeps_later_client_frames_in_order() -> None:
    hook = Gate()
    play = Playbook(hook)
    await play.client(m.Query("SELECT wait"))
    await play.client(m.Query("SELECT 2"))  # arrives while the first is in the hooks
    assert play.to_upstream.frames(decode_frontend) == []
    assert hook.seen == ["SELECT wait"]
    hook.gate.set()
    await play.client()
    assert play.to_upstream.frames(decode_frontend) == [m.Query("SELECT wait"),
                                                        m.Query("SELECT 2")]
    await play.finish()


async def test_client_eof_while_a_hook_waits_ends_after_what_it_sent() -> None:
    hook = Gate()
    play = Playbook(hook)
    await play.client(m.Query("SELECT wait"), m.Terminate())
    play.to_client.feed_eof()
    await play.client()
    assert not play.task.done()  # the statement is still in the hooks
    hook.gate.set()
    summary = await asyncio.wait_for(play.task, 5)
    assert play.to_upstream.frames(decode_frontend) == [m.Query("SELECT wait"), m.Terminate()]
    assert summary.end is EndReason.CLIENT_TERMINATE


async def test_a_full_client_stops_reading_the_upstream_until_it_drains() -> None:
    play = Playbook(Gate())
    await play.client(m.Query("SELECT 1"))
    client_side = play.to_client.protocol
    assert isinstance(client_side, asyncio.Protocol)
    client_side.pause_writing()
    assert not play.to_upstream.reading
    client_side.resume_writing()
    assert play.to_upstream.reading
    upstream_side = play.to_upstream.protocol
    assert isinstance(upstream_side, asyncio.Protocol)
    upstream_side.pause_writing()  # and the other way round
    assert not play.to_client.reading
    upstream_side.resume_writing()
    assert play.to_client.reading
    await play.finish()


async def test_held_answer_goes_out_once_durable_even_after_upstream_eof() -> None:
    hook = Holds()
    play = Playbook(hook)
    await play.client(m.Query("SELECT 1"))
    answer = [m.RowDescription(()), *rows(1), m.CommandComplete("SELECT 1"), READY]
    await play.upstream(*answer)
    play.to_upstream.feed_eof()
    await play.client()
    assert play.to_client.frames(decode_backend) == []  # held: the entry is not durable
    assert not play.task.done()
    hook.entries[0].set_result(1)
    summary = await asyncio.wait_for(play.task, 5)
    received = play.to_client.frames(decode_backend)
    assert received[:4] == answer
    assert isinstance(received[4], m.ErrorResponse) and received[4].sqlstate == "08006"
    assert summary.end is EndReason.UPSTREAM_DISCONNECT


async def test_held_answer_is_dropped_when_its_entry_fails() -> None:
    hook = Holds()
    play = Playbook(hook)
    await play.client(m.Query("SELECT secret"))
    await play.upstream(m.RowDescription(()), *rows(3))
    hook.entries[0].set_exception(JournalWriteFailed("disk gone"))
    summary = await asyncio.wait_for(play.task, 5)
    [error] = play.to_client.frames(decode_backend)
    assert isinstance(error, m.ErrorResponse) and error.sqlstate == "58030"
    assert summary.end is EndReason.JOURNAL_FAILED
