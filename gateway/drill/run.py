"""The drill itself: a scripted session through the listener, then checks from the outside.

Steps (as ``drill.identity``): log in, run ``drill.statements``, the ``denied``
statement (expects 42501), the ``max_rows`` statement (expects 54000), then a burst
of ``failed_logins`` logins with a wrong password. Checks: every step is in the
journal with who (identity), what (sql, decision), where (client, database), when
(time) and why (reason); the failed logins are journaled; the session ended;
``journal verify`` passes and a signed checkpoint covers the drill's last entry;
the alerts configured for denials and failed logins fired; with recordings, the
session's recording replays exactly the script, and with an archive, the
drill's segment is archived and confirmed within ``drill.archive_within`` (both
in :mod:`.evidence`). Driven by ``phigate drill`` and the gateway's schedule;
returns a :class:`~.report.DrillReport`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import GatewayError
from ..journal import verify_journal
from ..journal.keys import load_private
from ..journal.reader import iter_entries
from ..settings.config import Settings
from ..settings.values import Secret
from . import client
from .evidence import check_archive, check_replay
from .report import Check, DrillReport, report_dir
from .settings import DrillSettings

SETTLE_S = 0.1  # how often to look again for entries the gateway is still writing


async def run_drill(settings: Settings, drill: DrillSettings) -> DrillReport:
    assert settings.journal is not None
    report = DrillReport(identity=drill.identity, started=time.time())
    database = drill.database or next(iter(settings.databases))
    directory = settings.journal.dir
    first_seq = _last_seq(directory)
    report.first_seq = first_seq + 1
    steps = await _session(settings, drill, database, report)
    await _failed_logins(settings, drill, database, report)
    deadline = time.monotonic() + drill.timeout_s
    session = await _check_journal(directory, drill, database, first_seq, steps, report,
                                   deadline)
    if settings.recordings is not None and session is not None:
        await check_replay(settings.recordings, directory, session, [s for s, _, _ in steps],
                           report, deadline)
    await _check_verify(settings, report, deadline)
    await _check_alerts(settings, directory, first_seq, drill, report, deadline)
    if settings.archive is not None:
        await check_archive(settings, drill, report_dir(settings, drill), report)
    report.finished = time.time()
    return report


async def _session(settings: Settings, drill: DrillSettings, database: str,
                   report: DrillReport) -> list[tuple[str, str, str | None]]:
    """Run the script; returns (sql, expected decision, expected sqlstate) per statement."""
    steps: list[tuple[str, str, str | None]] = [(s, "allow", None) for s in drill.statements]
    if drill.denied:
        steps.append((drill.denied, "deny", "42501"))
    if drill.max_rows:
        steps.append((drill.max_rows, "allow", "54000"))
    target = client.target(settings, drill.identity, drill.password, database)
    started = time.monotonic()
    try:
        session = await client.login(target)
    except GatewayError as e:
        report.add(Check("login", False, f"the drill identity could not log in: {e}",
                         seconds=time.monotonic() - started))
        return []
    report.add(Check("login", True, f"logged in as {drill.identity} to {database}",
                     seconds=time.monotonic() - started))
    try:
        for sql, _, expected in steps:
            started = time.monotonic()
            result = await client.query(session, sql)
            ok = result.sqlstate == expected
            report.add(Check(f"statement {sql!r}", ok, (
                f"SQLSTATE {result.sqlstate or 'none'} (expected {expected or 'none'}), "
                f"{result.rows} rows"), seconds=time.monotonic() - started))
    finally:
        await client.close(session)
    return steps


async def _failed_logins(settings: Settings, drill: DrillSettings, database: str,
                         report: DrillReport) -> None:
    wrong = client.target(settings, drill.identity, Secret(secrets.token_urlsafe(24)), database)
    refused = 0
    started = time.monotonic()
    for _ in range(drill.failed_logins):
        try:
            session = await client.login(wrong)
        except GatewayError:
            refused += 1
        else:
            await client.close(session)
    report.add(Check("failed login burst", refused == drill.failed_logins,
                     f"{refused} of {drill.failed_logins} wrong-password logins refused",
                     seconds=time.monotonic() - started))


async def _check_journal(directory: Path, drill: DrillSettings, database: str, after: int,
                         steps: list[tuple[str, str, str | None]], report: DrillReport,
                         deadline: float) -> str | None:
    """The journal checks; returns the drill session's id (None: not journaled)."""
    def complete(found: list[dict[str, Any]]) -> bool:
        ended = any(e["type"] == "session_end" for e in found)
        failed = [e for e in found if e["type"] == "auth" and e.get("user") == drill.identity
                  and e.get("success") is False]
        return ended and len(failed) >= drill.failed_logins

    found = await _wait_entries(directory, after, complete, deadline)
    # Checkpoint lines are the journal's own: the drill's entries are what must be covered.
    report.last_seq = max((e["seq"] for e in found if e["type"] != "checkpoint"),
                          default=after)
    sessions = [e for e in found if e["type"] == "session_start"
                and e.get("identity") == drill.identity]
    if steps and not sessions:
        report.add(Check("journal: session", False, "no session_start for the drill identity"))
        return None
    session = sessions[0]["session"] if sessions else None
    mine = [e for e in found if e.get("session") == session] if session else []
    if sessions:
        start = sessions[0]
        where = bool(start.get("client")) and start.get("database") == database
        report.add(Check("journal: session", where and bool(start.get("time")), (
            f"session {session} of {drill.identity} from {start.get('client')} to "
            f"{start.get('database')}"), seqs=[start["seq"]]))
    statements = [e for e in mine if e["type"] == "statement"]
    for sql, decision, _ in steps:
        entry = next((e for e in statements if e.get("sql") == sql), None)
        ok = entry is not None and entry.get("decision") == decision and bool(
            entry.get("reason")) and bool(entry.get("time"))
        report.add(Check(f"journal: {sql!r}", ok, (
            f"decision {entry.get('decision')}, reason {entry.get('reason')!r}" if entry
            else "not in the journal"), seqs=[entry["seq"]] if entry else []))
    failed = [e for e in found if e["type"] == "auth" and e.get("user") == drill.identity
              and e.get("success") is False]
    report.add(Check("journal: failed logins", len(failed) >= drill.failed_logins,
                     f"{len(failed)} failed logins journaled", seqs=[e["seq"] for e in failed]))
    ended = [e for e in mine if e["type"] == "session_end"]
    report.add(Check("journal: session end", bool(ended) or not steps,
                     "session_end journaled" if ended else "no session_end",
                     seqs=[e["seq"] for e in ended]))
    return str(session) if session else None


async def _wait_entries(directory: Path, after: int,
                        complete: Callable[[list[dict[str, Any]]], bool],
                        deadline: float) -> list[dict[str, Any]]:
    while True:
        found = await asyncio.to_thread(_entries_after, directory, after)
        if complete(found) or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(SETTLE_S)


def _entries_after(directory: Path, after: int) -> list[dict[str, Any]]:
    return [e.fields for e in iter_entries(directory) if e.seq > after]


def _last_seq(directory: Path) -> int:
    last = 0
    for entry in iter_entries(directory):
        last = max(last, entry.seq)
    return last


async def _check_verify(settings: Settings, report: DrillReport, deadline: float) -> None:
    assert settings.journal is not None
    key = (await asyncio.to_thread(load_private, settings.journal.signing_key)).public_key()
    witness = settings.journal.checkpoint_copies[0] if settings.journal.checkpoint_copies else None
    while True:
        started = time.monotonic()
        result = await asyncio.to_thread(verify_journal, settings.journal.dir, key,
                                         witness_dir=witness, workers=1)
        covered = (result.newest_checkpoint is not None
                   and result.newest_checkpoint.covers >= (report.last_seq or 0))
        if (result.ok and covered) or not result.ok or time.monotonic() >= deadline:
            break
        await asyncio.sleep(SETTLE_S)
    cp = result.newest_checkpoint
    report.add(Check("journal verify", result.ok and covered, (
        result.summary().splitlines()[0] + (f"; checkpoint seq {cp.seq} covers the drill"
                                            if cp and covered else "; no checkpoint covers "
                                            "the drill's last entry yet")),
        seconds=time.monotonic() - started))


async def _check_alerts(settings: Settings, directory: Path, after: int,
                        drill: DrillSettings, report: DrillReport, deadline: float) -> None:
    rules = settings.alerts.rules if settings.alerts else ()
    wanted = {r.name for r in rules if r.when in ("failed_logins", "denied")
              and (r.when != "denied" or drill.denied)}
    if not wanted:
        return
    def rules_fired(found: list[dict[str, Any]]) -> set[str]:
        return {str(e.get("rule")) for e in found if e["type"] == "alert"}

    found = await _wait_entries(directory, after, lambda f: wanted <= rules_fired(f), deadline)
    fired = rules_fired(found)
    missing = sorted(wanted - fired)
    report.add(Check("alerts fired", not missing, (
        f"fired: {', '.join(sorted(wanted & fired)) or 'none'}"
        + (f"; did not fire: {', '.join(missing)}" if missing else ""))))
