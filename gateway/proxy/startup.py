"""One client connection from its first byte to the relay, and the end of its session.

Driven by ``gateway/proxy/server.py`` for every accepted socket (through the
:class:`SessionHost` protocol, so start-up never imports the server): SSLRequest /
GSSENCRequest / CancelRequest handling, the StartupMessage, client
authentication, the upstream connection with the service credential, the
start-up messages the client expects (ParameterStatus, BackendKeyData,
ReadyForQuery), then ``Relay.run``. Errors become PostgreSQL ErrorResponses
with PostgreSQL's own SQLSTATEs, never tracebacks.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from protocols.postgres import messages as m
from protocols.postgres.decoder import decode_backend, decode_startup
from protocols.postgres.encoder import encode
from protocols.postgres.errors import ProtocolError

from ..errors import (
    AuthenticationFailed,
    AuthorizationRejected,
    GatewayError,
    TooManyConnections,
    UnknownDatabase,
)
from .auth import SCRAM, AuthResult, ExternalLoginFailed
from .cancel import UpstreamKey, send_cancel
from .frames import error_frame
from .hooks import AuthEvent, EndReason, SessionInfo, SessionSummary
from .options import consume_gateway_options
from .pipes import take_over
from .relay import Relay
from .textreading import TextReading
from .upstream import Upstream, UpstreamRejected, connect_upstream
from .wire import FrameStream, PeerClosed

if TYPE_CHECKING:
    from ..settings.config import DatabaseSettings, Settings
    from .cancel import CancelRegistry
    from .hooks import HookChain


class SessionHost(Protocol):
    """What start-up needs from the server that accepted the socket (``server.Gateway``)."""

    settings: Settings
    server_ssl_context: ssl.SSLContext | None
    cancel_registry: CancelRegistry
    hooks: HookChain

    def admit(self) -> bool:
        """Take a connection slot; False when ``limits.max_connections`` are in use."""

    def release(self) -> None:
        """Give back the slot ``admit`` took."""

    async def authenticate(self, stream: FrameStream, user_name: str, client_ip: str
                           ) -> AuthResult:
        """Authenticate the client as ``user_name``; raises AuthenticationFailed."""

    async def run_session(self, relay: Relay) -> SessionSummary:
        """Run the relay to its end while the server counts it as live."""

log = logging.getLogger("phigate.session")

SSL_NOT_SUPPORTED = b"N"
SSL_SUPPORTED = b"S"
# Startup parameters the gateway consumes or replaces instead of forwarding.
# SQLSTATE 28000 (invalid_authorization_specification): the login no longer holds.
CREDENTIAL_EXPIRED = "28000"
_GATEWAY_PARAMETERS = frozenset({"user", "database", "application_name", "replication"})


@dataclass(slots=True)
class _Client:
    stream: FrameStream
    ip: str
    port: int
    tls: str | None = None


async def handle_client(gateway: SessionHost, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername") or ("unknown", 0)
    client = _Client(FrameStream(reader, writer, gateway.settings.limits.max_message_size),
                     str(peer[0]), int(peer[1]))
    try:
        startup = await asyncio.wait_for(_read_startup(gateway, client),
                                         gateway.settings.limits.startup_timeout_s)
        if startup is None:
            return
        await _session(gateway, client, startup)
    except UpstreamRejected as e:
        await _send_error(client, e.error.raw or encode(e.error))
    except GatewayError as e:
        await _send_error(client, error_frame(e))
    except ProtocolError as e:
        log.info("protocol error from %s: %s", client.ip, e.message)
        await _send_error(client, encode(m.error_response(e.sqlstate, e.message,
                                                          severity="FATAL")))
    except (TimeoutError, PeerClosed, ConnectionError, asyncio.IncompleteReadError,
            ssl.SSLError) as e:
        log.info("connection from %s closed during start-up: %s", client.ip, type(e).__name__)
    finally:
        client.stream.close()


async def _send_error(client: _Client, frame: bytes) -> None:
    try:
        await client.stream.send(frame)
    except (ConnectionError, RuntimeError):
        pass  # the client is gone; nothing left to tell it


async def _read_startup(gateway: SessionHost, client: _Client) -> m.StartupMessage | None:
    """Negotiate TLS and read the StartupMessage; None after a CancelRequest."""
    stream = client.stream
    while True:
        message = decode_startup(await stream.read_startup())
        if isinstance(message, m.StartupMessage):
            return message
        if isinstance(message, m.CancelRequest):
            await _forward_cancel(gateway, message)
            return None
        if isinstance(message, m.SSLRequest) and client.tls is None:
            await _negotiate_tls(gateway, client)
        elif isinstance(message, m.GSSENCRequest):
            await stream.send(SSL_NOT_SUPPORTED)
        else:
            raise ProtocolError("duplicate SSLRequest")


async def _negotiate_tls(gateway: SessionHost, client: _Client) -> None:
    context = gateway.server_ssl_context
    if context is None:
        await client.stream.send(SSL_NOT_SUPPORTED)
        return
    if len(client.stream.frames):  # bytes sent before the handshake could be injected
        raise ProtocolError("received unencrypted data after SSL request")
    await client.stream.send(SSL_SUPPORTED)
    await client.stream.writer.start_tls(context)
    ssl_object = client.stream.writer.get_extra_info("ssl_object")
    cipher = ssl_object.cipher() if ssl_object else None
    client.tls = f"{ssl_object.version()} {cipher[0]}" if ssl_object and cipher else "TLS"


async def _forward_cancel(gateway: SessionHost, request: m.CancelRequest) -> None:
    target = gateway.cancel_registry.lookup(request.process_id, request.secret_key)
    if target is None:
        log.info("cancel request with an unknown key ignored")
        return
    await send_cancel(target)


async def _session(gateway: SessionHost, client: _Client, startup: m.StartupMessage) -> None:
    settings = gateway.settings
    if settings.tls is not None and settings.tls.require and client.tls is None:
        raise AuthorizationRejected("phigate: TLS is required; connect with sslmode=require")
    params = dict(startup.parameters)
    user_name = params.get("user", "")
    if not user_name:
        raise AuthorizationRejected("no PostgreSQL user name specified in startup packet")
    if "replication" in params and params["replication"] not in ("false", "off", "0", "no"):
        raise AuthorizationRejected("phigate: replication connections are not supported")
    if not gateway.admit():
        raise TooManyConnections("sorry, too many clients already")
    try:
        await _admitted_session(gateway, client, startup, params, user_name)
    finally:
        gateway.release()


async def _admitted_session(gateway: SessionHost, client: _Client, startup: m.StartupMessage,
                            params: dict[str, str], user_name: str) -> None:
    await _negotiate_protocol(client, startup)
    database = params.get("database") or user_name
    auth = await _authenticate(gateway, client, user_name, database)
    db = gateway.settings.database_for(database)
    if db is None:
        raise UnknownDatabase(f'database "{database}" does not exist')
    forwarded, reason = consume_gateway_options({
        k: v for k, v in params.items()
        if k not in _GATEWAY_PARAMETERS and not k.startswith("_pq_.")})
    app_name = params.get("application_name", "")
    forwarded["application_name"] = gateway.settings.upstream_application_name.format(
        identity=auth.name, application_name=app_name)[:63]
    try:
        upstream = await connect_upstream(db, db.dbname or database, forwarded,
                                          gateway.settings.limits.max_message_size)
    except UpstreamRejected:
        raise  # the upstream answered (e.g. no such database): not a connection failure
    except GatewayError:
        gateway.hooks.upstream_failed(db.name)
        raise
    try:
        reading = TextReading.at_startup(_parameters(upstream))
    except GatewayError:
        upstream.stream.close()
        raise
    info = SessionInfo(
        session_id=secrets.token_hex(8), identity=auth.name, groups=auth.groups,
        client_ip=client.ip, client_port=client.port, database=database,
        application_name=app_name, tls=client.tls, reason=reason, started_at=time.time())
    await _relay(gateway, client, upstream, info, auth, (db, db.dbname or database), reading)


async def _authenticate(gateway: SessionHost, client: _Client, user_name: str,
                        database: str) -> AuthResult:
    """SCRAM (or a token) with the client; every attempt, good or bad, goes to the hooks."""
    event = AuthEvent(user=user_name, client_ip=client.ip, client_port=client.port,
                      database=database, success=False, method=SCRAM, tls=client.tls)
    try:
        auth = await gateway.authenticate(client.stream, user_name, client.ip)
    except ExternalLoginFailed as e:
        gateway.hooks.authenticated(replace(event, method=e.method, details=e.details,
                                            failure=e.detail or "credential refused"))
        raise
    except AuthenticationFailed as e:
        gateway.hooks.authenticated(replace(event, failure=e.detail or "wrong user or password"))
        raise
    gateway.hooks.authenticated(replace(event, success=True, method=auth.method,
                                        details=auth.details))
    return auth


async def _negotiate_protocol(client: _Client, startup: m.StartupMessage) -> None:
    """Answer newer minor versions and _pq_ options the way PostgreSQL 15 does."""
    minor = startup.protocol_version & 0xFFFF
    unrecognised = tuple(k for k in startup.parameters if k.startswith("_pq_."))
    if minor > 0 or unrecognised:
        await client.stream.send(encode(m.NegotiateProtocolVersion(
            newest_minor=0, unrecognized=unrecognised)))


async def _relay(gateway: SessionHost, client: _Client, upstream: Upstream, info: SessionInfo,
                 auth: AuthResult, db: tuple[DatabaseSettings, str], reading: TextReading
                 ) -> None:
    target = UpstreamKey(db[0].host, db[0].port, upstream.process_id, upstream.secret_key)
    cancel_key = gateway.cancel_registry.register(target)
    summary = SessionSummary()
    try:
        await gateway.hooks.session_started(info)
    except BaseException:
        gateway.cancel_registry.forget(cancel_key)
        upstream.stream.close()
        raise
    try:
        await client.stream.send(*_startup_frames(upstream, info, cancel_key.secret_key))
        relay = Relay(
            info, take_over(client.stream.reader, client.stream.writer, client.stream.leftover()),
            take_over(upstream.stream.reader, upstream.stream.writer, upstream.stream.leftover()),
            gateway.hooks, target, max_message_size=gateway.settings.limits.max_message_size,
            idle_timeout_s=gateway.settings.limits.idle_timeout_s, reading=reading)
        relay.upstream_db = db
        log.info("session started", extra={"session": info.session_id, "identity": info.identity,
                                           "client": f"{info.client_ip}:{info.client_port}",
                                           "database": info.database, "method": auth.method})
        expiry = _end_at(relay, auth.ends_at)
        try:
            summary = await gateway.run_session(relay)
        finally:
            if expiry is not None:
                expiry.cancel()
    finally:
        gateway.hooks.session_ended(info, summary)  # every started session ends, however
        gateway.cancel_registry.forget(cancel_key)
        upstream.stream.close()
    log.info("session ended", extra={"session": info.session_id, "end": summary.end.value,
                                     "statements": summary.statements,
                                     "refused": summary.refused, "rows": summary.rows})


def _end_at(relay: Relay, ends_at: float | None) -> asyncio.TimerHandle | None:
    """A session bounded by a credential's lifetime (a token's expiry) ends then, FATAL."""
    if ends_at is None:
        return None
    delay = max(0.0, ends_at - time.time())
    return asyncio.get_running_loop().call_later(
        delay, relay.shutdown, "phigate: your login expired; log in again (phigate login)",
        CREDENTIAL_EXPIRED, EndReason.CREDENTIAL_EXPIRED)


def _parameters(upstream: Upstream) -> dict[str, str]:
    parameters = {}
    for frame in upstream.parameter_frames:
        status = decode_backend(frame)
        assert isinstance(status, m.ParameterStatus)
        parameters[status.name] = status.value
    return parameters


def _startup_frames(upstream: Upstream, info: SessionInfo, secret_key: bytes) -> list[bytes]:
    frames: list[bytes] = []
    for frame in upstream.parameter_frames:
        status = decode_backend(frame)
        assert isinstance(status, m.ParameterStatus)
        if status.name == "application_name":  # the client sees its own name, not ours
            frame = encode(m.ParameterStatus(name="application_name",
                                             value=info.application_name))
        frames.append(frame)
    frames.extend(upstream.notice_frames)
    frames.append(encode(m.BackendKeyData(process_id=upstream.process_id,
                                          secret_key=secret_key)))
    frames.append(encode(m.ReadyForQuery(status="I")))
    return frames
