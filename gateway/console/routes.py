"""The console's URL map, the login and logout handlers, and what every page shares.

``GET /login`` is a form (``username``, ``password``, ``csrf_token``) and, with
``console.sso``, a link to sign in with the provider (``signon_routes``); ``POST /login``
checks the pre-session CSRF token, the rate limits and the password, then sets the session
cookie (``signin``) and redirects. The pages themselves are in ``pages`` and ``replay``.
Driven by ``app``.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from . import pages, replay, signon_routes
from .app import CONSOLE_KEY, COOKIE, LOGIN_COOKIE
from .audit import AccessNotRecorded
from .signin import (
    TOO_MANY,
    journal_refusal,
    login_form,
    safe_next,
    set_session_cookie,
    start_session,
)

log = logging.getLogger("phigate.console")
METHOD = "password"
STATIC = {"console.css": "text/css", "console.js": "text/javascript",
          "favicon.svg": "image/svg+xml"}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", lambda request: _redirect("/dashboard"))
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    signon_routes.add_routes(app)
    app.router.add_post("/logout", logout)
    app.router.add_get("/static/{name}", static)
    pages.add_routes(app)
    replay.add_routes(app)


async def _redirect(location: str) -> web.StreamResponse:
    raise web.HTTPSeeOther(location)


# ---------------------------------------------------------------- login and logout


async def login(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    form = await request.post()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    landing = safe_next(str(form.get("next", "")))
    if not console.login_csrf.valid(request.cookies.get(LOGIN_COOKIE),
                                    str(form.get("csrf_token", "")) or None):
        return await login_form(request, error="The form expired; please sign in again.",
                                status=403, username=username, next_path=landing)
    keys = (username, request.remote or "?")
    if console.auth.throttled(*keys):
        return await login_form(request, error=TOO_MANY, status=429, username=username,
                                next_path=landing)
    identity = await asyncio.to_thread(console.auth.check, username, password)
    if identity is None:
        log.warning("console sign-in refused", extra={"user": username, "client": keys[1]})
        console.auth.failed(*keys)
        await journal_refusal(console, {"method": METHOD, "identity": username,
                                        "reason": "wrong name or password, or not an auditor"})
        await asyncio.sleep(console.settings.limits.auth_failure_delay_s)
        return await login_form(request, error="Wrong name or password, or not an auditor.",
                                status=401, username=username, next_path=landing)
    try:
        session = await start_session(console, identity, {"method": METHOD})
    except AccessNotRecorded as e:
        return await login_form(request, error=f"Sign-in refused: it cannot be journaled ({e}).",
                                status=503, username=username, next_path=landing)
    response = web.HTTPSeeOther(landing or "/dashboard")
    set_session_cookie(response, console, session.token)
    response.del_cookie(LOGIN_COOKIE, path="/login")
    raise response


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
