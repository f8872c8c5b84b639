"""The asyncio server: listening socket, live sessions, signals, reload and drain.

The one place that owns the listening socket and process-wide state: the
current settings, the TLS context, the authenticator and its failure limiter,
the cancel-key registry, the hook chain and the set of live relays. Each
accepted socket is handed to ``gateway/proxy/startup.py``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence

from protocols.postgres.scram import tls_server_end_point

from ..errors import ConfigError
from ..settings.config import Settings, load_config
from .auth import AuthResult, ClientAuthenticator, FailureLimiter, PasswordLogin
from .cancel import CancelRegistry
from .hooks import Hook, HookChain, SessionSummary
from .relay import Relay
from .startup import handle_client
from .watchdog import watch
from .wire import FrameStream

log = logging.getLogger("phigate.server")


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls.cert, settings.tls.key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load TLS certificate or key: {e}",
                          file=str(settings.source), key="tls") from e
    return context


def listen_backlog(max_connections: int) -> int:
    """The listen queue's length: PostgreSQL's (twice max_connections; the kernel caps it at
    net.core.somaxconn). asyncio's default of 100 made a burst of connections that arrive
    faster than they are accepted lose their SYNs and retry a second later."""
    return 2 * max_connections


class Gateway:
    """A running PHIGate: accepts clients, authenticates them and relays their sessions."""

    def __init__(self, settings: Settings, hooks: Sequence[Hook] = (),
                 password_login: PasswordLogin | None = None) -> None:
        self.settings = settings
        self.server_ssl_context = server_ssl_context(settings)
        limits = settings.limits
        self._limiter = FailureLimiter(limits.auth_max_failures, limits.auth_failure_window_s,
                                       limits.auth_max_failures_per_ip)
        self._authenticator = ClientAuthenticator(settings.users, self._limiter,
                                                  limits.auth_failure_delay_s, password_login)
        self._channel_binding = _channel_binding_data(settings)
        self.cancel_registry = CancelRegistry()
        self.hooks = HookChain(hooks)
        self._connections = 0
        self._relays: set[Relay] = set()
        self._client_tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._watchdog: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- serving

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.settings.listen_host, self.settings.listen_port,
            limit=256 * 1024, backlog=listen_backlog(self.settings.limits.max_connections))
        log.info("listening", extra={"listen": f"{self.settings.listen_host}:{self.port}"})
        limits = self.settings.limits
        if limits.watchdog_timeout_s > 0:
            self._watchdog = asyncio.create_task(
                watch(lambda: self._relays, limits.watchdog_timeout_s, limits.max_message_size),
                name="watchdog")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._client_tasks.add(task)
        try:
            await handle_client(self, reader, writer)
        except Exception:  # never let one session take the server down
            log.exception("unexpected error in session")
            writer.close()
        finally:
            if task is not None:
                self._client_tasks.discard(task)

    def admit(self) -> bool:
        if self._connections >= self.settings.limits.max_connections:
            return False
        self._connections += 1
        return True

    def release(self) -> None:
        self._connections -= 1

    async def authenticate(self, stream: FrameStream, user_name: str, client_ip: str
                           ) -> AuthResult:
        tls = stream.writer.get_extra_info("ssl_object") is not None
        binding = self._channel_binding if tls else None
        return await self._authenticator.authenticate(stream, user_name, client_ip, binding, tls)

    async def run_session(self, relay: Relay) -> SessionSummary:
        self._relays.add(relay)
        try:
            return await relay.run()
        finally:
            self._relays.discard(relay)

    # ---------------------------------------------------------------- lifecycle

    def reload(self) -> None:
        """SIGHUP: re-read the config; users change for new logins, sessions keep running."""
        try:
            settings = load_config(self.settings.source)
        except ConfigError as e:
            log.error("reload failed, keeping the running configuration: %s", e)
            return
        self._authenticator.users = settings.users
        self.settings = settings
        self.hooks.config_loaded(settings)
        log.info("configuration reloaded", extra={"sha256": settings.sha256,
                                                  "users": len(settings.users)})

    async def drain(self, grace_s: float | None = None) -> None:
        """Stop accepting, let sessions finish within the grace period, then close them."""
        grace = self.settings.limits.shutdown_grace_s if grace_s is None else grace_s
        if self._server is not None:
            self._server.close()  # stop accepting; live sessions are ours to end
        if self._watchdog is not None:
            self._watchdog.cancel()
        log.info("draining", extra={"sessions": len(self._relays), "grace_s": grace})
        deadline = asyncio.get_running_loop().time() + grace
        while self._relays and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for relay in list(self._relays):
            relay.shutdown()
        pending = [t for t in self._client_tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        log.info("stopped")


def _channel_binding_data(settings: Settings) -> bytes | None:
    """tls-server-end-point data for SCRAM-SHA-256-PLUS, from our own certificate."""
    if settings.tls is None:
        return None
    pem = settings.tls.cert.read_text(encoding="ascii")
    return tls_server_end_point(ssl.PEM_cert_to_DER_cert(pem))
