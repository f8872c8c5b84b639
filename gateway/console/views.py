"""What every page shares: rendering a template with the header's facts, and journaling a
view of PHI (``audit_access``) before it is rendered, refusing the page when that fails.
Used by ``routes``, ``pages`` and ``replay``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .app import CONSOLE_KEY, session_of
from .audit import AccessNotRecorded


def render(request: web.Request, template: str, status: int = 200, **values: Any
           ) -> web.Response:
    console = request.app[CONSOLE_KEY]
    session = request.get("console_session")
    page = console.templates.get_template(template).render(
        me=session.identity if session else None, csrf=session.csrf if session else "",
        live=console.live, journal_dir=str(console.journal_dir), path=request.path,
        index_error=console.index_error, **values)
    return web.Response(text=page, content_type="text/html", status=status)


async def journaled(request: web.Request, action: str, *, session: str | None = None,
                    filters: dict[str, Any] | None = None) -> None:
    """Journal this view before anything is shown; a refusal page if that is impossible."""
    console = request.app[CONSOLE_KEY]
    try:
        await console.audit.record(session_of(request).identity, action, session=session,
                                    filters=filters)
    except AccessNotRecorded as e:
        raise web.HTTPServiceUnavailable(
            text=console.templates.get_template("refused.html").render(
                me=session_of(request).identity, csrf=session_of(request).csrf,
                live=console.live, journal_dir=str(console.journal_dir), path=request.path,
                index_error=console.index_error, reason=str(e)),
            content_type="text/html") from e
