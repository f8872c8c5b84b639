"""What both ways of signing in share: the sign-in page, the landing path, journaling the
outcome and starting the session.

A password sign-in (``routes``) and a sign-in with the ``sso:`` provider (``signon_routes``)
end the same way: an ``audit_access`` entry ``console login`` naming the method (and the
issuer), then a session and its cookie (HttpOnly, SameSite=Strict, Secure under TLS). A
refused sign-in is journaled as ``console login refused`` with its reason; one that cannot
be journaled is logged and still refused.
"""

from __future__ import annotations

import logging

from aiohttp import web

from .app import CONSOLE_KEY, COOKIE, LOGIN_COOKIE, Console
from .audit import AccessNotRecorded
from .auth import ConsoleSession
from .views import render

log = logging.getLogger("phigate.console")
TOO_MANY = "Too many failed sign-ins; wait a minute and try again."
MAX_CLAIMED_NAME = 200  # a refused name is journaled; a typed one may be anything


async def login_form(request: web.Request, *, error: str | None = None, status: int = 200,
                     username: str = "", next_path: str | None = None) -> web.Response:
    console = request.app[CONSOLE_KEY]
    cookie, token = console.login_csrf.new()
    landing = safe_next(request.query.get("next")) if next_path is None else next_path
    response = render(request, "login.html", status=status, error=error, login_csrf=token,
                      username=username, next=landing,
                      sso_label=console.signon.label if console.signon else None)
    response.set_cookie(LOGIN_COOKIE, cookie, httponly=True, samesite="Strict",
                        secure=console.secure, path="/login")
    return response


def safe_next(target: str | None) -> str:
    """Only a path on this site: never ``//evil.example`` or ``https://…``, nor one that a
    browser turns into either (it drops tabs and newlines, reads ``\\`` as ``/``)."""
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(c) < 0x21 or ord(c) == 0x7F for c in target)):
        return ""
    return target


async def start_session(console: Console, identity: str,
                        sign_in: dict[str, str]) -> ConsoleSession:
    """Journal the sign-in, then open the session; raises AccessNotRecorded."""
    await console.audit.record(identity, "login", sign_in=sign_in)
    return console.sessions.create(identity)


def set_session_cookie(response: web.StreamResponse, console: Console, token: str) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict",
                        secure=console.secure, path="/")


async def journal_refusal(console: Console, sign_in: dict[str, str]) -> None:
    """``console login refused`` with its reason; best effort (the refusal stands anyway)."""
    if "identity" in sign_in:
        sign_in = {**sign_in, "identity": sign_in["identity"][:MAX_CLAIMED_NAME]}
    try:
        await console.audit.record(None, "login refused", sign_in=sign_in)
    except AccessNotRecorded as e:
        log.error("a refused console sign-in could not be journaled: %s", e)
