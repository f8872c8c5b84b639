"""Catalog reads never wait on a lock a session holds (issue 17): they fail closed in seconds.

The service role is the cluster's superuser here, so a session may lock catalog tables. While
one session holds ``pg_inherits`` (which the view-dependency read needs) after its own DDL, a
statement naming a relation the catalog never listed is denied (42501) and then a new session
is refused with 08006, each within the catalog bounds instead of hanging; while it holds
``pg_proc``, its own fast-path call is denied as unverifiable instead of hanging. Once the lock
is gone, everything works again.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable

import asyncpg

from protocols.postgres import messages as m
from protocols.postgres.encoder import encode
from protocols.postgres.framing import FrameBuffer
from tests.conftest import ClusterInfo
from tests.e2e.harness import IDENTITIES, GatewayProcess, psql
from tests.e2e.test_fastpath import LO_CREAT, call, until_ready
from tests.e2e.test_robustness import _authenticated_socket

BOUND_S = 20  # lock_timeout 2 s, statement_timeout 10 s, deadline 15 s


def superuser_gateway(start: Callable[..., GatewayProcess], cluster: ClusterInfo
                      ) -> GatewayProcess:
    return start({"databases": {"clinic": {"user": cluster.superuser}}},
                 env={"CLINIC_DB_PASSWORD": cluster.superuser_password})


async def test_a_lookup_and_a_new_session_fail_closed_quickly_while_the_catalog_is_locked(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo) -> None:
    gateway = superuser_gateway(start_gateway, pg_cluster)
    holder = await asyncpg.connect(host="127.0.0.1", port=gateway.port, user="bob",
                                   database="clinic", ssl=False,
                                   password=IDENTITIES["bob"].password)
    try:
        await holder.execute("BEGIN; LOCK TABLE pg_catalog.pg_inherits IN ACCESS EXCLUSIVE "
                             "MODE; CREATE VIEW robust_locked_view AS SELECT 1 AS one")
        started = time.monotonic()  # a name the catalog never listed must be looked up
        denied = await asyncio.to_thread(psql, gateway, "SELECT * FROM robust_locked_view",
                                         user="alice", args=("-v", "VERBOSITY=verbose"))
        assert time.monotonic() - started < BOUND_S
        assert denied.returncode == 1 and "42501" in denied.stderr, denied.stderr
        assert "not seen" in denied.stderr and "lock timeout" in denied.stderr
        started = time.monotonic()  # the failed read is read again before a session starts
        refused = await asyncio.to_thread(psql, gateway, "SELECT 1", user="alice",
                                          args=("-v", "VERBOSITY=verbose"))
        assert time.monotonic() - started < BOUND_S
        assert refused.returncode == 2 and "FATAL" in refused.stderr, refused.stderr
        assert "upstream catalog" in refused.stderr and "lock timeout" in refused.stderr
        assert await holder.fetchval("SELECT one FROM robust_locked_view") == 1
        await holder.execute("ROLLBACK")
    finally:
        await holder.close()
    assert psql(gateway, "SELECT 'after'", user="alice").stdout.strip() == "after"


def test_a_fast_path_call_is_denied_quickly_while_pg_proc_is_locked(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo) -> None:
    gateway = superuser_gateway(start_gateway, pg_cluster)
    with _authenticated_socket(gateway) as sock:
        buffer = FrameBuffer()
        sock.sendall(encode(m.Query(
            "BEGIN; LOCK TABLE pg_catalog.pg_proc IN ACCESS EXCLUSIVE MODE")))
        until_ready(sock, buffer)
        started = time.monotonic()
        sock.sendall(call(LO_CREAT, struct.pack("!i", -1)))
        answer = until_ready(sock, buffer)
        assert time.monotonic() - started < BOUND_S
        error, ready = answer
        assert isinstance(error, m.ErrorResponse) and "denied" in error.message
        assert isinstance(ready, m.ReadyForQuery) and ready.status == "E"
        sock.sendall(encode(m.Query("ROLLBACK")))
        until_ready(sock, buffer)
        sock.sendall(call(LO_CREAT, struct.pack("!i", -1)))  # looked up now: allowed
        created, ready = until_ready(sock, buffer)
        assert isinstance(created, m.FunctionCallResponse) and created.result is not None
        (oid,) = struct.unpack("!I", created.result)
        sock.sendall(encode(m.Query(f"SELECT lo_unlink({oid})")))
        until_ready(sock, buffer)
