"""The session page and the data its in-page replay plays: ``GET /sessions/ID`` and
``GET /sessions/ID/events?from=N``.

The session page is journaled (``console session``) before it is shown, and that grants the
viewer's console session the right to fetch the recording's events for the next
:data:`GRANT_S`; the events endpoint journals nothing more itself (the player polls it once a
second to follow a live session) but refuses without a fresh grant. Events are decoded with
the same reader as ``phigate replay`` and checked against the journal's digests the same way
(``check_recording``). Driven by ``routes``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from ..recording.binding import Check, SessionFacts, check_recording
from ..recording.errors import RecordingError
from ..recording.events import to_json
from ..recording.keys import load_master_key
from ..recording.reader import RecordingReader
from .app import CONSOLE_KEY, Console, session_of
from .search import Reader
from .views import journaled, render

GRANT_S = 4 * 3600.0
MAX_EVENTS = 2000  # per answer; the player asks again from where it got to


def add_routes(app: web.Application) -> None:
    app.router.add_get("/sessions/{session}", session_page)
    app.router.add_get("/sessions/{session}/events", events)


def _row(console: Console, session: str) -> tuple[Any, list[Any]]:
    with Reader(console.index.path) as reader:
        return reader.session(session), reader.session_statements(session)


async def session_page(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    sid = request.match_info["session"]
    row, statements = await asyncio.to_thread(_row, console, sid)
    if row is None:
        raise web.HTTPNotFound(text=f"session {sid} is not in the index")
    await journaled(request, "session", session=sid)
    session_of(request).grants[sid] = time.monotonic()
    check = await asyncio.to_thread(_check, console, row)
    return render(request, "session.html", s=row, statements=statements, check=check,
                  recorded=row["recording_file"] is not None and console.settings.recordings
                  is not None)


def facts_of(row: Any) -> SessionFacts:
    """What ``check_recording`` needs, from the index instead of another journal scan."""
    facts = SessionFacts(row["session"], start={"time": row["start_time"]},
                         file=row["recording_file"], cut_off=bool(row["cut_off"]))
    if row["end_time"] is not None:
        final = json.loads(row["recording_final"]) if row["recording_final"] else None
        facts.end = {"recording": final} if final else {}
    if row["recording_checkpoint"]:
        facts.checkpoints = [json.loads(row["recording_checkpoint"])]
    return facts


def _check(console: Console, row: Any) -> Check | None:
    recordings = console.settings.recordings
    if recordings is None or row["recording_file"] is None:
        return None
    return check_recording(recordings.dir, facts_of(row))


async def events(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    sid = request.match_info["session"]
    granted = session_of(request).grants.get(sid)
    if granted is None or time.monotonic() - granted > GRANT_S:
        raise web.HTTPForbidden(text="open the session page first (that view is journaled)")
    try:
        start = max(0, int(request.query.get("from", "0")))
    except ValueError as e:
        raise web.HTTPBadRequest(text="from must be a number") from e
    row, _ = await asyncio.to_thread(_row, console, sid)
    if row is None or row["recording_file"] is None or console.settings.recordings is None:
        raise web.HTTPNotFound(text="this session was not recorded")
    return web.json_response(await asyncio.to_thread(_read_events, console, row, start))


def _read_events(console: Console, row: Any, start: int) -> dict[str, Any]:
    recordings = console.settings.recordings
    assert recordings is not None  # checked by the caller
    found: list[dict[str, Any]] = []
    problem = None
    complete = False
    try:
        key = load_master_key(recordings)
        with RecordingReader(recordings.dir / str(row["recording_file"]), key) as reader:
            reader.open()
            count = 0
            for event in reader.poll():
                if count >= start and len(found) < MAX_EVENTS:
                    found.append(to_json(event))
                count += 1
            complete = reader.complete
    except RecordingError as e:
        problem = str(e)
    check = _check(console, row)
    return {"events": found, "next": start + len(found), "complete": complete,
            "more": len(found) == MAX_EVENTS, "problem": problem,
            "check": {"status": check.status.value, "ok": check.status.ok,
                      "message": check.message} if check else None,
            "ended": row["end_time"] is not None}
