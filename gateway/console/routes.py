"""The console's URL map, the login and logout handlers, and what every page shares.

``GET /login`` is a form (``username``, ``password``, ``csrf_token``); ``POST /login`` checks
the pre-session CSRF token, the rate limits and the password, then sets the session cookie
(HttpOnly, SameSite=Strict, Secure under TLS) and redirects. The pages themselves are in
``pages`` and ``replay``. Driven by ``app``.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from . import pages, replay
from .app import CONSOLE_KEY, COOKIE, LOGIN_COOKIE, Console
from .audit import AccessNotRecorded
from .views import render

log = logging.getLogger("phigate.console")
STATIC = {"console.css": "text/css", "console.js": "text/javascript",
          "favicon.svg": "image/svg+xml"}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", lambda request: _redirect("/dashboard"))
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/static/{name}", static)
    pages.add_routes(app)
    replay.add_routes(app)


async def _redirect(location: str) -> web.StreamResponse:
    raise web.HTTPSeeOther(location)


# ---------------------------------------------------------------- login and logout


async def login_form(request: web.Request, *, error: str | None = None, status: int = 200,
                     username: str = "") -> web.Response:
    console = request.app[CONSOLE_KEY]
    cookie, token = console.login_csrf.new()
    response = render(request, "login.html", status=status, error=error, login_csrf=token,
                      username=username, next=_safe_next(request.query.get("next")))
    response.set_cookie(LOGIN_COOKIE, cookie, httponly=True, samesite="Strict",
                        secure=console.secure, path="/login")
    return response


async def login(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    form = await request.post()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    if not console.login_csrf.valid(request.cookies.get(LOGIN_COOKIE),
                                    str(form.get("csrf_token", "")) or None):
        return await login_form(request, error="The form expired; please sign in again.",
                                status=403, username=username)
    keys = (username, request.remote or "?")
    if console.auth.throttled(*keys):
        return await login_form(request, error="Too many failed sign-ins; wait a minute "
                                "and try again.", status=429, username=username)
    identity = await asyncio.to_thread(console.auth.check, username, password)
    if identity is None:
        log.warning("console sign-in refused", extra={"user": username, "client": keys[1]})
        console.auth.failed(*keys)
        await asyncio.sleep(console.settings.limits.auth_failure_delay_s)
        return await login_form(request, error="Wrong name or password, or not an auditor.",
                                status=401, username=username)
    try:
        await console.audit.record(identity, "login")
    except AccessNotRecorded as e:
        return await login_form(request, error=f"Sign-in refused: it cannot be journaled ({e}).",
                                status=503, username=username)
    session = console.sessions.create(identity)
    response = web.HTTPSeeOther(_safe_next(str(form.get("next", ""))) or "/dashboard")
    _set_session_cookie(response, console, session.token)
    response.del_cookie(LOGIN_COOKIE, path="/login")
    raise response


def _set_session_cookie(response: web.StreamResponse, console: Console, token: str) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict",
                        secure=console.secure, path="/")


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never ``//evil.example`` or ``https://…``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return ""
    return target


async def logout(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    token = request.cookies.get(COOKIE)
    if token:
        console.sessions.end(token)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


async def static(request: web.Request) -> web.StreamResponse:
    from importlib.resources import files

    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    data = files(__package__).joinpath("static", name).read_bytes()
    return web.Response(body=data, content_type=STATIC[name],
                        headers={"Cache-Control": "max-age=300"})
