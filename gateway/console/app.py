"""Assembly of the console: settings → the aiohttp application, its background index task.

:func:`build_app` wires the index, the access journal, the authenticator, the verifier and
the routes; :func:`run_console` serves it (TLS when ``console.tls`` is set) until SIGINT or
SIGTERM. The index follows the journal every :data:`INDEX_INTERVAL_S` in a worker thread.
With ``console.sso`` the client secret is read here, at start-up (a missing one is a
ConfigError). Middlewares: security headers on every answer, the login gate, CSRF on every
POST. Driven by ``phigate console`` (``cli``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import jinja2
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policies.model import Rule

from ..errors import ConfigError
from ..journal.keys import key_paths, load_public
from ..journal.segments import LOCK_FILE
from ..settings.config import Settings
from .audit import AccessJournal
from .auth import Authenticator, ConsoleSession, LoginCsrf, SessionStore, same_token
from .budgets import load_rules
from .index import SearchIndex
from .settings import CALLBACK_PATH, ConsoleSettings, read_client_secret
from .signon import SignOn
from .verifier import Verifier

log = logging.getLogger("phigate.console")
INDEX_INTERVAL_S = 1.0
COOKIE = "phigate_console"
LOGIN_COOKIE = "phigate_login"
PUBLIC_PATHS = frozenset({"/login", "/login/sso", CALLBACK_PATH})  # and /static/
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CONSOLE_KEY: web.AppKey[Console] = web.AppKey("console")


@dataclass
class Console:
    """Everything a request handler needs."""

    settings: Settings
    config: ConsoleSettings
    journal_dir: Path
    index: SearchIndex
    audit: AccessJournal
    auth: Authenticator
    sessions: SessionStore
    login_csrf: LoginCsrf
    verifier: Verifier
    templates: jinja2.Environment
    signon: SignOn | None = None  # sign-in with the sso: provider (console.sso)
    rules: tuple[Rule, ...] = ()
    rules_problem: str | None = None
    index_task: asyncio.Task[None] | None = None
    index_error: str | None = None

    @property
    def secure(self) -> bool:
        return self.config.tls is not None

    @property
    def live(self) -> bool:
        """A gateway holds the journal shown (else: an offline copy, or a stopped gateway's)."""
        return held_by_a_gateway(self.journal_dir)

    @property
    def groups(self) -> dict[str, tuple[str, ...]]:
        found: dict[str, list[str]] = {}
        for user in self.settings.users.values():
            for group in user.groups:
                found.setdefault(group, []).append(user.name)
        return {g: tuple(sorted(names)) for g, names in found.items()}


def held_by_a_gateway(journal_dir: Path) -> bool:
    """Whether some process holds the journal's flock, read from ``/proc/locks``.

    Never opens, creates or locks anything in the journal directory: the console is
    read-only towards it (it may be a read-only copy), and even a brief lock of our own
    could make a gateway starting at that moment find its journal busy.
    """
    try:
        lock = os.stat(journal_dir / LOCK_FILE)
        held = Path("/proc/locks").read_text(encoding="ascii")
    except OSError:
        return False  # no lock file: no gateway has run on this copy
    wanted = f"{os.major(lock.st_dev):02x}:{os.minor(lock.st_dev):02x}:{lock.st_ino}"
    return any(line.split()[1] == "FLOCK" and wanted in line.split()
               for line in held.splitlines() if len(line.split()) > 5)


def make_console(settings: Settings) -> Console:
    config = settings.console
    if config is None:
        raise ConfigError("the config has no console section", file=str(settings.source),
                          key="console")
    journal_dir = config.journal or (settings.journal.dir if settings.journal else None)
    if journal_dir is None:
        raise ConfigError("the console needs a journal: set journal.dir or console.journal",
                          file=str(settings.source), key="console.journal")
    recordings = settings.recordings.dir if settings.recordings else None
    copies = config.checkpoint_copies or (
        settings.journal.checkpoint_copies if settings.journal else ())
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(files(__package__).joinpath("templates"))),
        autoescape=True, undefined=jinja2.StrictUndefined)
    rules, rules_problem = load_rules(settings.policy_files)
    return Console(
        signon=_signon(settings, config),
        rules=rules, rules_problem=rules_problem, settings=settings, config=config,
        journal_dir=journal_dir,
        index=SearchIndex(config.index, journal_dir),
        audit=AccessJournal(settings.journal),
        auth=Authenticator(lambda: settings.users, config.auditors, settings.limits),
        sessions=SessionStore(config.session_idle_s, config.session_max_s),
        login_csrf=LoginCsrf(),
        verifier=Verifier(journal_dir, _public_key(settings, config),
                          copies[0] if copies else None, recordings),
        templates=templates)


def _signon(settings: Settings, config: ConsoleSettings) -> SignOn | None:
    if config.sso is None:
        return None
    if settings.sso is None:  # load_config refuses this; stay defensive
        raise ConfigError("console.sso needs the sso: section", file=str(settings.source),
                          key="console.sso")
    return SignOn(settings.sso, config.sso, read_client_secret(config.sso, str(settings.source)))


def _public_key(settings: Settings, config: ConsoleSettings) -> Ed25519PublicKey | None:
    path = config.journal_key
    if path is None and settings.journal is not None:
        signing = settings.journal.signing_key
        path = key_paths(signing.with_suffix(""))[1] if signing.suffix == ".key" else None
    if path is None or not path.exists():
        log.warning("no journal public key (console.journal_key): verification unavailable")
        return None
    return load_public(path)


def build_app(console: Console) -> web.Application:
    from . import routes

    app = web.Application(middlewares=[_headers, _login_gate, _csrf],
                          client_max_size=64 * 1024)
    app[CONSOLE_KEY] = console
    routes.add_routes(app)
    app.on_startup.append(_start_indexing)
    app.on_cleanup.append(_stop_indexing)
    return app


def session_of(request: web.Request) -> ConsoleSession:
    session = request.get("console_session")
    if not isinstance(session, ConsoleSession):
        raise web.HTTPSeeOther("/login")
    return session


# ---------------------------------------------------------------- middlewares


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as e:
        response = e
    console = request.app[CONSOLE_KEY]
    response.headers.setdefault(
        "Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; "
        "base-uri 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    if console.secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    if isinstance(response, web.HTTPException) and response.status >= 300:
        raise response
    return response


@web.middleware
async def _login_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or request.path.startswith("/static/"):
        return await handler(request)
    console = request.app[CONSOLE_KEY]
    session = console.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        raise web.HTTPSeeOther("/login")
    request["console_session"] = session
    return await handler(request)


@web.middleware
async def _csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method != "POST" or request.path == "/login":
        return await handler(request)  # /login checks its own pre-session token
    session = session_of(request)
    given = request.headers.get("X-CSRF-Token")
    if given is None:
        given = str((await request.post()).get("csrf_token", "")) or None
    if not same_token(session.csrf, given):
        raise web.HTTPForbidden(text="CSRF token missing or wrong")
    return await handler(request)


# ---------------------------------------------------------------- the index task


async def _start_indexing(app: web.Application) -> None:
    console = app[CONSOLE_KEY]
    await _index_once(console)
    if console.verifier.available:
        console.verifier.start()  # the panel's first state: the chain as it is at start-up
    console.index_task = asyncio.create_task(_follow(console), name="phigate-console-index")


async def _stop_indexing(app: web.Application) -> None:
    console = app[CONSOLE_KEY]
    if console.index_task is not None:
        console.index_task.cancel()
        await asyncio.gather(console.index_task, return_exceptions=True)
    await console.verifier.wait()
    console.index.close()


async def _follow(console: Console) -> None:
    while True:
        await asyncio.sleep(INDEX_INTERVAL_S)
        await _index_once(console)


async def _index_once(console: Console) -> None:
    try:
        await asyncio.to_thread(console.index.update)
        console.index_error = None
    except Exception as e:  # the pages say the index is behind; the next round retries
        log.exception("index update failed")
        console.index_error = str(e)


# ---------------------------------------------------------------- serving


def ssl_context(config: ConsoleSettings) -> ssl.SSLContext | None:
    if config.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls.cert, config.tls.key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load the console's TLS certificate or key: {e}",
                          key="console.tls") from e
    return context


async def run_console(settings: Settings) -> int:
    console = make_console(settings)
    context = ssl_context(console.config)
    runner = web.AppRunner(build_app(console), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, console.config.host, console.config.port, ssl_context=context)
    await site.start()
    scheme = "https" if context else "http"
    log.info("console listening on %s://%s:%d/ (journal %s, %s)", scheme, console.config.host,
             console.config.port, console.journal_dir,
             "live" if console.live else "offline copy")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0
