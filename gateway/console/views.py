"""What every page shares: rendering a template with the header's facts, and journaling a
view of PHI (``audit_access``) before it is rendered, refusing the page when that fails.
Used by ``routes``, ``pages`` and ``replay``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .app import CONSOLE_KEY, session_of
from .audit import AccessNotRecorded


def page(request: web.Request, template: str, **values: Any) -> str:
    """``template`` rendered with what the header and footer of every page need."""
    console = request.app[CONSOLE_KEY]
    session = request.get("console_session")
    return str(console.templates.get_template(template).render(
        me=session.identity if session else None, csrf=session.csrf if session else "",
        live=console.live, journal_dir=str(console.journal_dir), path=request.path,
        index_error=console.index_error, **values))


def render(request: web.Request, template: str, status: int = 200, **values: Any
           ) -> web.Response:
    return web.Response(text=page(request, template, **values), content_type="text/html",
                        status=status)


async def journaled(request: web.Request, action: str, *, session: str | None = None,
                    filters: dict[str, Any] | None = None) -> None:
    """Journal this view before anything is shown; a refusal page if that is impossible."""
    console = request.app[CONSOLE_KEY]
    try:
        await console.audit.record(session_of(request).identity, action, session=session,
                                   filters=filters)
    except AccessNotRecorded as e:
        raise web.HTTPServiceUnavailable(text=page(request, "refused.html", reason=str(e)),
                                         content_type="text/html") from e
