"""``GET /login/sso`` (off to the provider) and ``GET /login/sso/callback`` (back from it).

The first gives the browser a binding cookie (``phigate_sso``: SameSite=Lax, since the
provider's redirect back is a cross-site navigation, which Strict cookies do not survive),
begins a pending sign-in (``signon``) and redirects to the provider. The callback takes the
pending sign-in its ``state`` names (only with the same browser's cookie), has ``signon``
exchange the code and validate the ID token, checks ``console.auditors`` and opens the
session like a password sign-in (``signin``). The session cookie is SameSite=Strict, so the
callback answers with a page that moves on to the console itself (a same-site navigation
that carries it) rather than a redirect that is still part of the cross-site chain.

Refusals count against the same limits as wrong passwords (per address, and per name once
the token names someone), wait ``limits.auth_failure_delay`` and are journaled as
``console login refused``. A provider that cannot be reached is a 503 page, not counted
(nobody did anything wrong). Driven by ``routes``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets

from aiohttp import web

from ..sso.tokens import TokenIdentity
from .app import CONSOLE_KEY, Console
from .audit import AccessNotRecorded
from .settings import CALLBACK_PATH
from .signin import (
    TOO_MANY,
    journal_refusal,
    login_form,
    safe_next,
    set_session_cookie,
    start_session,
)
from .signon import METHOD, PENDING_TTL_S, SignOn, SignOnRefused, SignOnUnavailable, digest
from .views import render

log = logging.getLogger("phigate.console")
BINDING_COOKIE = "phigate_sso"
BINDING_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")  # token_urlsafe(32): never a chosen value
UNAVAILABLE = ("{label} cannot be reached right now. Try again in a moment, or sign in with "
               "a password.")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login/sso", begin)
    app.router.add_get(CALLBACK_PATH, callback)


def _signon(console: Console) -> SignOn:
    if console.signon is None:
        raise web.HTTPNotFound(text="single sign-on is not configured (console.sso)")
    return console.signon


async def begin(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    signon = _signon(console)
    landing = safe_next(request.query.get("next"))
    if console.auth.address_throttled(request.remote or "?"):
        return await login_form(request, error=TOO_MANY, status=429, next_path=landing)
    binding = request.cookies.get(BINDING_COOKIE, "")
    if not BINDING_SHAPE.fullmatch(binding):
        binding = secrets.token_urlsafe(32)
    try:
        url = await signon.begin(digest(binding), landing)
    except SignOnUnavailable as e:
        log.warning("console sign-in: the identity provider is unavailable: %s", e)
        return await login_form(request, error=UNAVAILABLE.format(label=signon.label),
                                status=503, next_path=landing)
    response = web.HTTPSeeOther(url)
    response.set_cookie(BINDING_COOKIE, binding, httponly=True, samesite="Lax",
                        secure=console.secure, path="/login/sso", max_age=int(PENDING_TTL_S))
    raise response


async def callback(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    signon = _signon(console)
    address = request.remote or "?"
    if console.auth.address_throttled(address):
        return await login_form(request, error=TOO_MANY, status=429)
    query = request.query
    cookie = request.cookies.get(BINDING_COOKIE)
    pending = signon.pending.take(query.get("state", ""), digest(cookie) if cookie else None)
    if pending is None:
        return await _refused(request, "the sign-in is unknown, expired or was begun in "
                                       "another browser (state)", status=400)
    if "error" in query:
        return await _refused(request, f"the provider answered {query['error']!r}"[:200],
                              next_path=pending.next)
    try:
        identity = await signon.finish(pending, query.get("code", ""))
    except SignOnUnavailable as e:
        log.warning("console sign-in: the identity provider is unavailable: %s", e)
        await journal_refusal(console, _sign_in(signon, f"provider unavailable: {e}"))
        return await login_form(request, error=UNAVAILABLE.format(label=signon.label),
                                status=503, next_path=pending.next)
    except SignOnRefused as e:
        return await _refused(request, e.reason, next_path=pending.next)
    if console.auth.throttled(identity.username, address):
        return await login_form(request, error=TOO_MANY, status=429, next_path=pending.next)
    problem = console.auth.sso_refusal(identity.username, identity.groups)
    if problem is not None:
        return await _refused(request, problem, identity, status=403, next_path=pending.next)
    try:
        session = await start_session(console, identity.username,
                                      _sign_in(signon, identity=identity))
    except AccessNotRecorded as e:
        return await login_form(request, error=f"Sign-in refused: it cannot be journaled ({e}).",
                                status=503, next_path=pending.next)
    response = render(request, "signed_in.html", identity=identity.username,
                      target=pending.next or "/dashboard")
    set_session_cookie(response, console, session.token)
    return response


async def _refused(request: web.Request, reason: str, identity: TokenIdentity | None = None,
                   *, status: int = 401, next_path: str = "") -> web.Response:
    console = request.app[CONSOLE_KEY]
    signon = _signon(console)
    address = request.remote or "?"
    name = identity.username if identity else ""
    log.warning("console sign-in with SSO refused: %s", reason,
                extra={"user": name or None, "client": address})
    console.auth.failed(name, address)
    await journal_refusal(console, _sign_in(signon, reason, identity))
    await asyncio.sleep(console.settings.limits.auth_failure_delay_s)
    return await login_form(request, error=f"Single sign-on did not sign you in: {reason}.",
                            status=status, next_path=next_path)


def _sign_in(signon: SignOn, reason: str | None = None,
             identity: TokenIdentity | None = None) -> dict[str, str]:
    """The journal's ``sign_in``: method, issuer, who the token named, why it was refused."""
    fields = {"method": METHOD, "issuer": signon.issuer, "client_id": signon.client_id}
    if identity is not None:
        fields.update(identity=identity.username, subject=identity.subject,
                      token_id=identity.token_id)
    if reason is not None:
        fields["reason"] = reason
    return fields
