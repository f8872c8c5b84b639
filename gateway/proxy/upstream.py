"""Connecting to the real database with the service credential.

Driven by ``gateway/proxy/startup.py`` after the client has authenticated. Speaks
the start-up phase as a client: optional TLS (``disable | require |
verify-full``), StartupMessage, then SCRAM-SHA-256 (with channel binding over
TLS), md5, cleartext or trust, up to the first ReadyForQuery. The person never
sees the credential; errors that would reveal it are replaced by 08006.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

from protocols.postgres import messages as m
from protocols.postgres.decoder import decode_backend
from protocols.postgres.encoder import encode
from protocols.postgres.errors import ProtocolError
from protocols.postgres.md5 import md5_password
from protocols.postgres.scram import (
    ScramAuthenticationFailed,
    ScramClient,
    ScramError,
    tls_server_end_point,
)

from ..errors import GatewayError, UpstreamUnavailable
from ..settings.config import DatabaseSettings
from .wire import FrameStream, PeerClosed

PROTOCOL_3_0 = 196608
SSL_ACCEPTED = b"S"


class UpstreamRejected(GatewayError):
    """The upstream answered the start-up with an error the client may see as is."""

    def __init__(self, error: m.ErrorResponse) -> None:
        super().__init__(error.message or "upstream refused the connection")
        self.sqlstate = error.sqlstate or "08006"
        self.error = error


# Upstream start-up errors the client may see verbatim; anything else (bad service
# password, pg_hba rejection) would reveal the gateway's credential setup.
_PASS_THROUGH_SQLSTATES = frozenset({"3D000", "53300", "57P03", "0A000", "42704", "22023"})


@dataclass(slots=True)
class Upstream:
    """An authenticated upstream connection, ready for queries."""

    stream: FrameStream
    process_id: int = 0
    secret_key: bytes = b""
    parameter_frames: list[bytes] = field(default_factory=list)
    notice_frames: list[bytes] = field(default_factory=list)
    tls: bool = False


async def connect_upstream(db: DatabaseSettings, dbname: str, parameters: dict[str, str],
                           max_message_size: int) -> Upstream:
    """Open, secure and authenticate a connection; raise a GatewayError on failure."""
    try:
        return await asyncio.wait_for(
            _connect(db, dbname, parameters, max_message_size), db.connect_timeout_s)
    except TimeoutError as e:
        raise UpstreamUnavailable("could not connect to the upstream database",
                                  detail="connection timed out") from e
    except (OSError, PeerClosed, asyncio.IncompleteReadError, ssl.SSLError) as e:
        raise UpstreamUnavailable("could not connect to the upstream database",
                                  detail=type(e).__name__) from e
    except (ProtocolError, ScramError, ScramAuthenticationFailed) as e:
        raise UpstreamUnavailable("upstream authentication failed") from e


async def _connect(db: DatabaseSettings, dbname: str, parameters: dict[str, str],
                   max_message_size: int) -> Upstream:
    reader, writer = await asyncio.open_connection(db.host, db.port)
    stream = FrameStream(reader, writer, max_message_size)
    try:
        upstream = Upstream(stream=stream)
        if db.tls != "disable":
            await _start_tls(stream, db)
            upstream.tls = True
        startup = {**parameters, "user": db.user, "database": dbname}
        await stream.send(encode(m.StartupMessage(protocol_version=PROTOCOL_3_0,
                                                  parameters=startup)))
        await _authenticate(upstream, db)
        await _read_until_ready(upstream)
        return upstream
    except BaseException:
        stream.close()
        raise


async def _start_tls(stream: FrameStream, db: DatabaseSettings) -> None:
    await stream.send(encode(m.SSLRequest()))
    answer = await stream.read_byte()
    if answer != SSL_ACCEPTED:
        raise UpstreamUnavailable("upstream database does not accept TLS",
                                  hint=f"databases.{db.name}.tls is {db.tls}")
    await stream.writer.start_tls(_client_ssl_context(db), server_hostname=db.host)


def _client_ssl_context(db: DatabaseSettings) -> ssl.SSLContext:
    if db.tls == "verify-full":
        context = ssl.create_default_context(cafile=str(db.ca) if db.ca else None)
        return context
    # sslmode=require: encrypted, but like libpq it does not verify the certificate.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _channel_binding(stream: FrameStream) -> bytes | None:
    ssl_object = stream.writer.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert(binary_form=True)
    return tls_server_end_point(cert) if cert else None


async def _authenticate(upstream: Upstream, db: DatabaseSettings) -> None:
    stream = upstream.stream
    password = db.password.value if db.password else None
    while True:
        message = decode_backend(await stream.read_frame())
        if isinstance(message, m.AuthenticationOk):
            return
        if isinstance(message, m.ErrorResponse):
            _raise_startup_error(message)
        if password is None:
            raise UpstreamUnavailable("upstream asked for a password but none is configured",
                                      hint=f"set databases.{db.name}.password_env")
        if isinstance(message, m.AuthenticationCleartextPassword):
            await stream.send(encode(m.PasswordMessage(data=password.encode() + b"\x00")))
        elif isinstance(message, m.AuthenticationMD5Password):
            digest = md5_password(db.user, password, message.salt)
            await stream.send(encode(m.PasswordMessage(data=digest.encode() + b"\x00")))
        elif isinstance(message, m.AuthenticationSASL):
            await _scram(stream, password, message.mechanisms)
        else:
            raise UpstreamUnavailable("upstream asked for an unsupported authentication method",
                                      detail=type(message).__name__)


async def _scram(stream: FrameStream, password: str, mechanisms: tuple[str, ...]) -> None:
    client = ScramClient(password, channel_binding=_channel_binding(stream))
    mechanism = client.choose(mechanisms)
    await stream.send(encode(m.SASLInitialResponse(mechanism=mechanism, data=client.first())))
    server_first = decode_backend(await stream.read_frame())
    if isinstance(server_first, m.ErrorResponse):
        _raise_startup_error(server_first)
    if not isinstance(server_first, m.AuthenticationSASLContinue):
        raise UpstreamUnavailable("upstream broke the SCRAM exchange")
    # PBKDF2 takes milliseconds: keep it off the event loop that relays everyone else.
    client_final = await asyncio.to_thread(client.final, server_first.data)
    await stream.send(encode(m.SASLResponse(data=client_final)))
    server_final = decode_backend(await stream.read_frame())
    if isinstance(server_final, m.ErrorResponse):
        _raise_startup_error(server_final)
    if not isinstance(server_final, m.AuthenticationSASLFinal):
        raise UpstreamUnavailable("upstream broke the SCRAM exchange")
    client.verify(server_final.data)  # mutual authentication: the server knew the verifier


async def _read_until_ready(upstream: Upstream) -> None:
    stream = upstream.stream
    while True:
        frame = await stream.read_frame()
        message = decode_backend(frame)
        if isinstance(message, m.ReadyForQuery):
            return
        if isinstance(message, m.ParameterStatus):
            upstream.parameter_frames.append(frame)
        elif isinstance(message, m.BackendKeyData):
            upstream.process_id = message.process_id
            upstream.secret_key = message.secret_key
        elif isinstance(message, m.NoticeResponse):
            upstream.notice_frames.append(frame)
        elif isinstance(message, m.NegotiateProtocolVersion):
            pass  # we ask for 3.0 with no options; the client's own version is answered by us
        elif isinstance(message, m.ErrorResponse):
            _raise_startup_error(message)
        else:
            raise UpstreamUnavailable("unexpected message from upstream during start-up",
                                      detail=type(message).__name__)


def _raise_startup_error(error: m.ErrorResponse) -> None:
    if error.sqlstate in _PASS_THROUGH_SQLSTATES:
        raise UpstreamRejected(error)
    raise UpstreamUnavailable("upstream database refused the gateway's connection",
                              hint="the gateway administrator should check the service role")
