"""The read-only pages: dashboard, activity (and its export), sessions, people, alerts,
integrity. Each page that shows PHI (SQL text, who read which tables, volumes) is journaled
through ``routes.journaled`` before it is rendered. Queries run in a worker thread against a
read-only index connection. Driven by ``routes``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web

from ..journal import segments
from ..journal.checkpoints import read_checkpoint_file, witness_name
from . import charts
from .app import CONSOLE_KEY, session_of
from .budgets import Budget, budgets_of
from .search import COUNT_CAP, PAGE_SIZE, ActivityFilter, Reader
from .views import journaled, render

T = TypeVar("T")
EXPORT_COLUMNS = ("seq", "time", "identity", "database", "client", "session", "n", "verdict",
                  "rules", "tables", "phi", "sql", "rows", "bytes", "duration_ms", "sqlstate",
                  "error")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard", dashboard)
    app.router.add_get("/activity", activity)
    app.router.add_get("/activity/export", export)
    app.router.add_get("/sessions", sessions)
    app.router.add_get("/people", people)
    app.router.add_get("/people/{identity}", person)
    app.router.add_get("/alerts", alerts)
    app.router.add_get("/integrity", integrity)
    app.router.add_post("/integrity/verify", verify_now)
    app.router.add_get("/integrity/progress", verify_progress)


async def _query(request: web.Request, ask: Callable[[Reader], T]) -> T:
    path = request.app[CONSOLE_KEY].index.path

    def run() -> T:
        with Reader(path) as reader:
            return ask(reader)
    return await asyncio.to_thread(run)


def _hour(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H")


# ---------------------------------------------------------------- dashboard


async def dashboard(request: web.Request) -> web.Response:
    await journaled(request, "dashboard")
    since = _hour(timedelta(hours=47))

    def ask(reader: Reader) -> dict[str, Any]:
        return {"hours": reader.hours(since), "tables": reader.top_tables(),
                "people": reader.people()[:10], "totals": reader.totals(),
                "alerts": reader.alerts(limit=5), "meta": reader.meta()}
    data = await _query(request, ask)
    hours = charts.fill_hours(data["hours"], since, 48)
    return render(request, "dashboard.html", **data,
                  statements_chart=charts.bars(
                      [(h, r["statements"] if r else 0) for h, r in hours], "statements"),
                  denials_chart=charts.bars(
                      [(h, r["denied"] if r else 0) for h, r in hours], "denials", tone="bad"),
                  phi_chart=charts.hbars([(p["identity"], p["phi_rows"] or 0)
                                          for p in data["people"]]),
                  tables_chart=charts.hbars([(t["name"], t["statements"])
                                             for t in data["tables"]],
                                            marks={t["name"] for t in data["tables"]
                                                   if t["phi"]}))


# ---------------------------------------------------------------- activity


def _filter(request: web.Request) -> ActivityFilter:
    try:
        return ActivityFilter.parse(dict(request.query), request.app[CONSOLE_KEY].groups)
    except ValueError as e:
        raise web.HTTPBadRequest(text=f"bad filter: {e}") from e


async def activity(request: web.Request) -> web.Response:
    where = _filter(request)
    await journaled(request, "activity", filters=where.as_access())
    started = time.perf_counter()
    rows, count, capped, tables = await _query(
        request, lambda r: (*r.activity(where), r.table_names()))
    took_ms = (time.perf_counter() - started) * 1000
    console = request.app[CONSOLE_KEY]
    return render(request, "activity.html", where=where, rows=rows, count=count,
                  capped=capped, cap=COUNT_CAP, table_names=tables, page_size=PAGE_SIZE,
                  took_ms=took_ms,
                  identities=sorted(console.settings.users), groups=sorted(console.groups),
                  databases=sorted(n for n in console.settings.databases if n != "*"),
                  more=len(rows) == PAGE_SIZE and where.page * PAGE_SIZE < count)


async def export(request: web.Request) -> web.StreamResponse:
    where = _filter(request)
    kind = request.query.get("format", "csv")
    if kind not in ("csv", "jsonl"):
        raise web.HTTPBadRequest(text="format must be csv or jsonl")
    await journaled(request, "export", filters={**where.as_access(), "format": kind})
    rows = await _query(request, lambda r: [dict(row) for row in r.export(where)])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8" if kind == "csv"
        else "application/x-ndjson; charset=utf-8",
        "Content-Disposition": f'attachment; filename="phigate-activity-{stamp}.{kind}"'})
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if kind == "csv":
        writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        if kind == "csv":
            writer.writerow([row.get(c) for c in EXPORT_COLUMNS])
        else:
            buffer.write(json.dumps({c: row.get(c) for c in EXPORT_COLUMNS},
                                    ensure_ascii=False) + "\n")
        if buffer.tell() > 64 * 1024:
            await response.write(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
    await response.write(buffer.getvalue().encode())
    await response.write_eof()
    return response


# ---------------------------------------------------------------- sessions, people, alerts


async def sessions(request: web.Request) -> web.Response:
    identity = request.query.get("identity") or None
    await journaled(request, "sessions", filters={"identity": identity} if identity else None)
    rows = await _query(request, lambda r: r.sessions(identity, limit=200))
    return render(request, "sessions.html", rows=rows, identity=identity)


async def people(request: web.Request) -> web.Response:
    await journaled(request, "people")
    rows = await _query(request, lambda r: r.people())
    console = request.app[CONSOLE_KEY]
    budgets = {row["identity"]: _hourly_budget(console, row["identity"]) for row in rows}
    return render(request, "people.html", rows=rows, users=console.settings.users,
                  budgets=budgets, rules_problem=console.rules_problem)


def _budgets(console: Any, identity: str) -> list[Budget]:
    user = console.settings.users.get(identity)
    return budgets_of(console.rules, identity, user.groups if user else frozenset())


def _hourly_budget(console: Any, identity: str) -> int | None:
    """The tightest PHI rows-per-hour budget that applies to ``identity``."""
    return min((b.rows_per_hour for b in _budgets(console, identity)
                if b.rows_per_hour is not None), default=None)


async def person(request: web.Request) -> web.Response:
    identity = request.match_info["identity"]
    await journaled(request, "person", filters={"identity": identity})
    since = _hour(timedelta(days=7))

    def ask(reader: Reader) -> dict[str, Any]:
        return {"sessions": reader.sessions(identity, limit=50),
                "hours": reader.person_hours(identity, since),
                "denials": reader.activity(ActivityFilter(identity=identity,
                                                          decision="deny"), limit=20)[0]}
    data = await _query(request, ask)
    hours = charts.fill_hours(data["hours"], since, 7 * 24)
    console = request.app[CONSOLE_KEY]
    limit = _hourly_budget(console, identity)
    return render(request, "person.html", identity=identity,
                  user=console.settings.users.get(identity), **data,
                  budgets=_budgets(console, identity), rules_problem=console.rules_problem,
                  phi_chart=charts.bars([(h, r["phi_rows"] if r else 0) for h, r in hours],
                                        "PHI rows", limit=limit),
                  phi_week=sum(r["phi_rows"] for r in data["hours"]),
                  peak=max((r["phi_rows"] for r in data["hours"]), default=0))


async def alerts(request: web.Request) -> web.Response:
    await journaled(request, "alerts")
    rows = await _query(request, lambda r: r.alerts(limit=200))
    return render(request, "alerts.html", rows=rows)


# ---------------------------------------------------------------- integrity


async def integrity(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    meta = await _query(request, lambda r: r.meta())
    facts = await asyncio.to_thread(_integrity_facts, console)
    return render(request, "integrity.html", meta=meta, run=console.verifier.last,
                  can_verify=console.verifier.available, **facts)


def _integrity_facts(console: Any) -> dict[str, Any]:
    directory = console.journal_dir
    try:
        recorded = read_checkpoint_file(directory / segments.CHECKPOINT_FILE)
        problem = None
    except ValueError as e:
        recorded, problem = None, f"checkpoint.json is damaged: {e}"
    age = None
    if recorded is not None:
        moment = datetime.fromisoformat(recorded.time.replace("Z", "+00:00"))
        age = (datetime.now(UTC) - moment).total_seconds()
    copies = []
    for copy in console.config.checkpoint_copies or (
            console.settings.journal.checkpoint_copies if console.settings.journal else ()):
        state: dict[str, Any] = {"dir": str(copy), "seq": None, "problem": None}
        try:
            found = read_checkpoint_file(copy / witness_name(recorded.journal)) \
                if recorded else None
            state["seq"] = found.seq if found else None
            state["time"] = found.time if found else None
            if found is None:
                state["problem"] = "no checkpoint of this journal"
        except (ValueError, OSError) as e:
            state["problem"] = f"unreadable: {e}"
        copies.append(state)
    return {"checkpoint": recorded, "checkpoint_age": age, "checkpoint_problem": problem,
            "copies": copies}


async def verify_now(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    session_of(request)
    if not console.verifier.available:
        raise web.HTTPConflict(text="no journal public key configured (console.journal_key)")
    console.verifier.start()
    if request.headers.get("X-CSRF-Token"):
        return web.json_response(_progress(console))
    raise web.HTTPSeeOther("/integrity")


async def verify_progress(request: web.Request) -> web.Response:
    return web.json_response(_progress(request.app[CONSOLE_KEY]))


def _progress(console: Any) -> dict[str, Any]:
    run = console.verifier.last
    if run is None:
        return {"state": "never"}
    report = run.report
    return {
        "state": run.phase, "fraction": round(run.fraction, 4), "error": run.error,
        "ok": report.ok if report and run.phase == "done" else None,
        "summary": report.summary() if report else None,
        "first_bad_seq": report.failure.seq if report and report.failure else None,
        "recording_failures": [f"{c.session}: {c.message}" for c in run.recording_failures],
    }
