"""Hostile and broken peers: each gets a clean error or close; everyone else keeps working."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Callable

import asyncpg
import pytest

from protocols.postgres import messages as m
from protocols.postgres.decoder import decode_backend
from protocols.postgres.encoder import encode
from protocols.postgres.framing import FrameBuffer
from protocols.postgres.scram import ScramClient
from tests.conftest import ClusterInfo
from tests.e2e.harness import IDENTITIES, GatewayProcess, psql


def raw_connect(gateway: GatewayProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    return sock


def read_messages(sock: socket.socket) -> list[object]:
    """Everything the gateway sends until it closes the connection."""
    buffer = FrameBuffer()
    while chunk := sock.recv(65536):
        buffer.feed(chunk)
    messages = []
    while (frame := buffer.next_frame()) is not None:
        messages.append(decode_backend(frame))
    return messages


def still_serving(gateway: GatewayProcess) -> None:
    result = psql(gateway, "SELECT 'alive'", user="bob")
    assert result.stdout.strip() == "alive", result.stderr


@pytest.mark.parametrize("packet", [
    struct.pack("!i", 3),  # length below the minimum
    struct.pack("!ii", 100_000, 196608),  # over PostgreSQL's 10 000-byte start-up limit
    struct.pack("!ii", 8, 0x00020000),  # protocol 2.0
    struct.pack("!ii", 12, 196608) + b"user",  # parameters not NUL-terminated
])
def test_malformed_startup_packets_get_an_error_and_a_close(
        gateway: GatewayProcess, packet: bytes) -> None:
    with raw_connect(gateway) as sock:
        sock.sendall(packet)
        messages = read_messages(sock)
    assert len(messages) == 1 and isinstance(messages[0], m.ErrorResponse)
    assert messages[0].sqlstate in {"08P01", "0A000"}
    still_serving(gateway)


def _authenticated_socket(gateway: GatewayProcess) -> socket.socket:
    """A raw socket that completed SCRAM as alice (using our own SCRAM client)."""
    sock = raw_connect(gateway)
    try:
        _login(sock)
    except BaseException:
        sock.close()
        raise
    return sock


def _login(sock: socket.socket) -> None:
    sock.sendall(encode(m.StartupMessage(protocol_version=196608,
                                         parameters={"user": "alice", "database": "clinic"})))
    buffer = FrameBuffer()

    def next_message() -> object:
        while (frame := buffer.next_frame()) is None:
            buffer.feed(sock.recv(65536))
        return decode_backend(frame)

    client = ScramClient(IDENTITIES["alice"].password)
    offer = next_message()
    assert isinstance(offer, m.AuthenticationSASL)
    mechanism = client.choose(offer.mechanisms)
    sock.sendall(encode(m.SASLInitialResponse(mechanism=mechanism, data=client.first())))
    server_first = next_message()
    assert isinstance(server_first, m.AuthenticationSASLContinue)
    sock.sendall(encode(m.SASLResponse(data=client.final(server_first.data))))
    while not isinstance(next_message(), m.ReadyForQuery):
        pass


@pytest.mark.parametrize("garbage", [
    b"?\x00\x00\x00\x04",  # unknown message type
    b"Q\x00\x00\x00\x02",  # length below 4
    b"Q\x7f\xff\xff\xff",  # 2 GB message: over the size limit, refused from the header
    b"P\x00\x00\x00\x08ab\x00\x00",  # Parse cut short inside its fields
])
def test_malformed_messages_after_login_end_only_that_session(
        gateway: GatewayProcess, garbage: bytes) -> None:
    with _authenticated_socket(gateway) as sock:
        sock.sendall(garbage)
        messages = read_messages(sock)
    errors = [msg for msg in messages if isinstance(msg, m.ErrorResponse)]
    assert errors and errors[-1].severity == "FATAL"
    assert errors[-1].sqlstate in {"08P01", "54000"}
    still_serving(gateway)


def test_client_stalling_mid_startup_is_timed_out(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway({"limits": {"startup_timeout": "1s"}})
    with raw_connect(gateway) as sock:
        sock.sendall(b"\x00\x00")  # half a length word, then nothing
        still_serving(gateway)  # others are not held up meanwhile
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed by the gateway
        assert time.monotonic() - started < 5


def test_upstream_dying_mid_query_ends_that_session_cleanly(
        gateway: GatewayProcess, pg_cluster: ClusterInfo) -> None:
    async def scenario() -> None:
        conn = await asyncpg.connect(host="127.0.0.1", port=gateway.port, user="alice",
                                     password=IDENTITIES["alice"].password, database="clinic",
                                     ssl=False)
        pid = conn.get_server_pid()
        query = asyncio.create_task(conn.fetchval("SELECT pg_sleep(30)"))
        await asyncio.sleep(0.5)
        pg_cluster.cluster.execute(f"SELECT pg_terminate_backend({pid})")
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
            await asyncio.wait_for(query, 10)
        conn.terminate()

    asyncio.run(scenario())
    still_serving(gateway)


def test_max_connections_is_53300(start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway({"limits": {"max_connections": 1}})

    async def scenario() -> None:
        first = await asyncpg.connect(host="127.0.0.1", port=gateway.port, user="alice",
                                      password=IDENTITIES["alice"].password, database="clinic",
                                      ssl=False)
        try:
            with pytest.raises(asyncpg.TooManyConnectionsError):
                await asyncpg.connect(host="127.0.0.1", port=gateway.port, user="bob",
                                      password=IDENTITIES["bob"].password, database="clinic",
                                      ssl=False)
        finally:
            await first.close()

    asyncio.run(scenario())


def test_repeated_failures_are_rate_limited(start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway({"limits": {"auth_max_failures": 3, "auth_failure_window": "60s"}})
    for _ in range(3):
        assert psql(gateway, "SELECT 1", user="alice", password="wrong").returncode != 0
    # Even the right password is refused while the window lasts, with the same message.
    blocked = psql(gateway, "SELECT 1", user="alice")
    assert blocked.returncode != 0
    assert 'password authentication failed for user "alice"' in blocked.stderr
    # Another person behind the same IP (a bastion, a NAT) still logs in with her password.
    assert psql(gateway, "SELECT 1", user="bob").returncode == 0


def test_password_spraying_from_one_ip_is_limited(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway({"limits": {"auth_max_failures": 3, "auth_max_failures_per_ip": 4,
                                        "auth_failure_window": "60s"}})
    for user in ("alice", "bob", "oncall", "mallory"):  # one guess each: under the user limit
        assert psql(gateway, "SELECT 1", user=user, password="Winter2026!").returncode != 0
    sprayed = psql(gateway, "SELECT 1", user="bob")  # the right password, but the IP is blocked
    assert sprayed.returncode != 0
    assert 'password authentication failed for user "bob"' in sprayed.stderr


def test_upstream_termination_is_relayed_verbatim(
        gateway: GatewayProcess, pg_cluster: ClusterInfo) -> None:
    # The server's own FATAL (57P01, its words), then EOF: nothing of the gateway's after it
    # (psycopg reported "received 2 results from command 'BEGIN'" when there was).
    with _authenticated_socket(gateway) as sock:
        sock.sendall(encode(m.Query(sql="SELECT pg_backend_pid()")))
        buffer = FrameBuffer()
        pid, ready = None, False
        while not ready:
            buffer.feed(sock.recv(65536))
            while (frame := buffer.next_frame()) is not None:
                message = decode_backend(frame)
                if isinstance(message, m.DataRow):
                    pid = int(message.values[0] or b"0")
                ready = ready or isinstance(message, m.ReadyForQuery)
        pg_cluster.cluster.execute(f"SELECT pg_terminate_backend({pid})")
        messages = read_messages(sock)
    assert len(messages) == 1, messages
    error = messages[0]
    assert isinstance(error, m.ErrorResponse) and error.severity == "FATAL"
    assert (error.sqlstate, error.message) == (
        "57P01", "terminating connection due to administrator command")
    still_serving(gateway)


def test_a_session_ended_while_the_client_sends_reads_as_eof_not_a_reset(
        gateway: GatewayProcess) -> None:
    # The backend ends while its client is still sending (pg8000's test_broken_pipe_read):
    # the client reads the server's FATAL, then EOF. Closing with the client's bytes unread
    # made the kernel answer with a reset instead of the FIN; pg8000 raised a bare
    # ConnectionResetError on it and leaked its socket.
    with _authenticated_socket(gateway) as sock:
        sock.sendall(encode(m.Query(sql="SELECT pg_terminate_backend(pg_backend_pid())")))
        filler = encode(m.CopyData(data=b"x" * 65536))  # ignored outside COPY, by both
        sock.setblocking(False)  # what the kernel takes now; a send never sees the reset
        with contextlib.suppress(BlockingIOError):
            for _ in range(64):
                sock.send(filler)
        sock.settimeout(10)
        messages = read_messages(sock)  # a ConnectionResetError here fails the test
    errors = [(e.severity, e.sqlstate) for e in messages if isinstance(e, m.ErrorResponse)]
    # The backend, ending with our filler unread, resets its connection right after its
    # FATAL; the kernel sometimes drops the FATAL with it (a direct client then gets only
    # the reset), and the gateway then says the upstream was lost.
    assert errors in ([("FATAL", "57P01")], [("FATAL", "08006")]), messages
    still_serving(gateway)
