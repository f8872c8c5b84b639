"""Bursts of connections and SSLRequests through ``phigate serve``, and asyncpg's pool race.

asyncpg's ``TestPool.test_pool_config_persistence`` (100 connections in a burst,
``max_queries=1``) failed its tearDown with "Future exception was never retrieved …
unexpected connection_lost() call". The cause is asyncpg's own: ``Pool.close()`` cancels the
pool's floor-keeping task while its connect is inside ``loop.create_connection``, after the
SSL-negotiation protocol was made and before asyncpg wrote its SSLRequest; asyncio then closes
the transport and the protocol sets an exception on a future nobody will await. No byte has
reached the server yet, so no server can change it: the tests below cancel a connect at that
point and see the same leak through the gateway and directly against PostgreSQL. What the
gateway did differ in: its listen queue held 100 connections (asyncio's default) where
PostgreSQL's holds twice ``max_connections``, so a burst beyond it lost SYNs for a second.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import struct
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import IDENTITIES, GatewayProcess

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
# asyncio's coroutine that waits for a new transport's connection_made (base_events.py).
MAKING_TRANSPORT = "_create_connection_transport"


async def _handshake(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """A TCP connection, or None when the listen queue dropped our SYNs (also the one retried
    after a second)."""
    try:
        return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.5)
    except (TimeoutError, OSError):
        return None


async def test_a_burst_waits_in_the_listen_queue_as_postgresql_lets_it(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    """While the gateway accepts nothing (stopped), 300 connections complete their handshake
    in the kernel's queue (2 × max_connections, as PostgreSQL's); once it runs again each
    SSLRequest is answered 'N', none is reset."""
    gateway = start_gateway({"limits": {"max_connections": 150}})
    gateway.signal(signal.SIGSTOP)
    try:
        connected = await asyncio.gather(*[_handshake(gateway.port) for _ in range(300)])
        for stream in connected:
            if stream is not None:
                stream[1].write(SSL_REQUEST)
    finally:
        gateway.signal(signal.SIGCONT)
    streams = [s for s in connected if s is not None]
    assert len(streams) == 300
    answers = await asyncio.gather(*[asyncio.wait_for(r.read(1), 30) for r, _ in streams])
    for _, writer in streams:
        writer.close()
    assert set(answers) == {b"N"}


def _innermost(task: asyncio.Task[Any]) -> str:
    """Name of the innermost coroutine ``task`` awaits in."""
    coroutine: Any = task.get_coro()
    name = ""
    while coroutine is not None and hasattr(coroutine, "cr_frame"):
        name = coroutine.cr_code.co_name
        coroutine = coroutine.cr_await
    return name


async def _cancel_while_making_transport(**connect: Any) -> list[str]:
    """Start an asyncpg connect (sslmode prefer), cancel it once it waits for its transport,
    and return what the loop reports as never retrieved."""
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(
        lambda _loop, context: reported.append(f"{context['message']}: "
                                               f"{context.get('exception')!r}"))
    try:
        task = asyncio.create_task(asyncpg.connect(ssl="prefer", **connect))
        for _ in range(10_000):  # one loop iteration per step: deterministic, not timed
            await asyncio.sleep(0)
            if _innermost(task) == MAKING_TRANSPORT or task.done():
                break
        assert _innermost(task) == MAKING_TRANSPORT
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(5):  # the transport's connection_lost runs on a later iteration
            await asyncio.sleep(0)
        del task
        gc.collect()  # the future's "never retrieved" is reported when it is collected
    finally:
        loop.set_exception_handler(previous)
    return reported


LEAK = "Future exception was never retrieved: ConnectionError('unexpected connection_lost() call')"


async def test_asyncpg_leaks_the_same_future_directly_and_through_the_gateway(
        gateway: GatewayProcess, pg_cluster: ClusterInfo) -> None:
    through = await _cancel_while_making_transport(
        host="127.0.0.1", port=gateway.port, user="alice",
        password=IDENTITIES["alice"].password, database="clinic")
    direct = await _cancel_while_making_transport(
        host=pg_cluster.host, port=pg_cluster.port, user=pg_cluster.service_user,
        password=pg_cluster.service_password, database=pg_cluster.database)
    assert through == direct == [LEAK]


async def test_asyncpg_pool_burst_with_max_queries_1_through_the_gateway(
        gateway: GatewayProcess) -> None:
    """The suite's test, less its race: the pool's floor connection is let finish before
    the pool closes. 100 acquisitions, each on a new connection, nothing reported."""
    loop = asyncio.get_running_loop()
    reported: list[object] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    seen: set[int] = set()

    async def one(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
            seen.add(await conn.fetchval("SELECT pg_backend_pid()") or 0)

    try:
        async with asyncpg.create_pool(
                host="127.0.0.1", port=gateway.port, user="alice",
                password=IDENTITIES["alice"].password, database="clinic",
                min_size=1, max_size=10, max_queries=2) as pool:
            await asyncio.gather(*[one(pool) for _ in range(100)])
            for _ in range(1000):  # the floor connection, reconnecting
                if pool.get_size() >= pool.get_min_size():
                    break
                await asyncio.sleep(0.01)
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert len(seen) == 100
    assert reported == []
