"""``phigate replay``: a recorded session as the psql transcript its user saw.

Renders events as psql would have printed them (prompt with the database and
the time, aligned result tables with "(N rows)", "(showing 100 of 25 000
rows)" when the capture was capped, ``ERROR:  …`` lines), plus ``--``
comment lines for what psql would not show but an auditor needs (bind
parameters, COPY data sent by the client, denials with their rule, the end
of the session). Pacing follows the recorded timing, with idle gaps capped;
``--follow`` tails a live session; ``--json`` prints the decoded events.
Before anything is shown the recording is checked against the journal and a
mismatch is announced loudly. Driven by ``cli``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TextIO

from .binding import Check, SessionFacts, Status
from .errors import RecordingTampered
from .events import (
    Event,
    Message,
    Note,
    ResultReceived,
    SessionEnded,
    SessionStarted,
    StatementSent,
    to_json,
)
from .reader import RecordingReader
from .table import Header, format_table
from .values import is_numeric

MAX_GAP_S = 2.0  # idle time in a session is replayed as at most this long
FOLLOW_POLL_S = 0.2
# With the gateway gone and the file not growing for this long, a follow stops (cut off).
FOLLOW_GIVE_UP_S = 2.0
EXIT_OK, EXIT_TAMPERED = 0, 1


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    speed: float = 1.0
    instant: bool = False
    follow: bool = False
    json: bool = False
    color: bool = False
    width: int | None = None  # fit tables to this many columns; None shows values whole


class Style:
    """ANSI colours when writing to a terminal; plain text otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def _paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled and text else text

    def prompt(self, text: str) -> str:
        return self._paint("1;32", text)

    def meta(self, text: str) -> str:
        return self._paint("2", text)

    def error(self, text: str) -> str:
        return self._paint("31", text)

    def notice(self, text: str) -> str:
        return self._paint("33", text)

    def alarm(self, text: str) -> str:
        return self._paint("1;37;41", text)


def thousands(n: int) -> str:
    return f"{n:,}".replace(",", " ")


def rows_footer(shown: int, total: int) -> str:
    if shown < total:
        return f"(showing {thousands(shown)} of {thousands(total)} rows)"
    return "(1 row)" if total == 1 else f"({thousands(total)} rows)"


class Transcript:
    """Turns events into psql-like text on ``out``."""

    def __init__(self, out: TextIO, style: Style, width: int | None) -> None:
        self.out = out
        self.style = style
        self.width = width
        self.database = "?"
        self.started_at = 0.0
        self._denied: set[int] = set()  # statements whose denial was shown

    def write(self, line: str = "") -> None:
        self.out.write(line + "\n")

    def comment(self, text: str) -> None:
        self.write(self.style.meta(f"-- {text}"))

    def clock(self, t: float, *, date: bool = False) -> str:
        moment = dt.datetime.fromtimestamp(self.started_at + t, dt.UTC)
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if date else "%H:%M:%S")

    def alarm(self, lines: Iterable[str]) -> None:
        bar = "!" * 72
        self.write(self.style.alarm(bar))
        for line in lines:
            self.write(self.style.alarm(f"!!! {line}"))
        self.write(self.style.alarm(bar))

    def verification(self, check: Check) -> None:
        if check.status is Status.VERIFIED:
            self.comment(f"recording verified: {check.message}")
        elif check.status.ok:
            self.comment(f"recording {check.status.value}: {check.message}")
        else:
            self.alarm([f"RECORDING DOES NOT MATCH THE JOURNAL ({check.status.value})",
                        check.message, "what follows may have been altered"])

    def tampered(self, message: str) -> None:
        self.alarm(["RECORDING FAILS AUTHENTICATION", message,
                    "nothing after this point is shown"])

    def incomplete(self, facts: SessionFacts, pending: int) -> None:
        self.write(self.style.alarm(f"*** {_incomplete_text(facts, pending)} ***"))

    def event(self, event: Event) -> None:
        if isinstance(event, StatementSent):
            self._statement(event)
        elif isinstance(event, ResultReceived):
            self._result(event)
        elif isinstance(event, SessionStarted):
            self._session(event)
        elif isinstance(event, SessionEnded):
            self.comment(f"session ended {self.clock(event.t)} ({event.end}) after "
                         f"{event.t:.1f} s: {event.statements} statements, {event.refused} "
                         f"refused, {thousands(event.rows)} rows")
        elif isinstance(event, Note):
            self.comment(event.text)

    def _session(self, event: SessionStarted) -> None:
        self.database, self.started_at = event.database, event.started_at
        groups = f" ({', '.join(event.groups)})" if event.groups else ""
        app = f", application {event.application_name!r}" if event.application_name else ""
        self.comment(f"session {event.session}: {event.identity}{groups} from {event.client} "
                     f"to {event.database}{app}")
        self.comment(f"started {self.clock(0, date=True)}, TLS: {event.tls or 'none'}, "
                     f"reason: {event.reason or '-'}, rows captured per statement: "
                     f"{event.capture_rows}")

    def _statement(self, event: StatementSent) -> None:
        stamp = f"[{self.clock(event.t)}] "
        lines = event.sql.split("\n")
        self.write(self.style.meta(stamp) + self.style.prompt(f"{self.database}=> ") + lines[0])
        for line in lines[1:]:
            self.write(" " * len(stamp) + self.style.prompt(f"{self.database}-> ") + line)
        if event.parameters:
            values = ", ".join(f"${i} = {_literal(v)}" for i, v in enumerate(event.parameters, 1))
            self.comment(f"parameters: {values}")
        denial = event.denial
        if denial is not None:
            self._denied.add(event.n)
            self._message(Message("ERROR", denial.sqlstate, denial.message, denial.detail,
                                  denial.hint))
            rules = ", ".join(denial.rules) or "the gateway"
            self.write(self.style.alarm(f"*** DENIED ({denial.sqlstate}) by {rules} ***"))

    def _result(self, event: ResultReceived) -> None:
        if event.refused:
            if event.n not in self._denied:  # refused by a hook after the recorder
                self.write(self.style.alarm(f"*** statement {event.n} refused by the "
                                            "gateway ***"))
            return
        for notice in event.notices:
            self._message(notice)
        if event.copy is not None:
            self._copy(event)
        elif event.columns is not None and (event.sample or event.error is None):
            for tag in event.tags[:-1]:
                self.write(tag)
            self._table(event)
        else:
            for tag in event.tags:
                self.write(tag)
        if event.suspended:
            self.comment("portal suspended: the client may fetch more rows")
        if event.error is not None:
            self._message(event.error)
            if event.row_limit_hit:
                self.write(self.style.alarm(f"*** result cut by the gateway after "
                                            f"{thousands(event.rows)} rows ***"))

    def _table(self, event: ResultReceived) -> None:
        assert event.columns is not None
        headers = [Header(c.name, is_numeric(c.type_oid)) for c in event.columns]
        for line in format_table(headers, event.sample, self.width):
            self.write(line)
        if event.error is not None:
            self.comment(f"{thousands(event.rows)} rows reached the client before the error")
        else:
            self.write(rows_footer(len(event.sample), event.rows))
            self.write()

    def _copy(self, event: ResultReceived) -> None:
        assert event.copy is not None
        copy = event.copy
        if copy.direction == "in":
            self.comment(f"COPY data sent by the client ({thousands(copy.bytes)} bytes):")
        for line in copy.lines:
            self.write(line[:-1] if line.endswith("\n") else line)
        if copy.direction == "out":
            shown = len(copy.lines)
            self.comment(f"COPY to the client: {rows_footer(shown, event.rows)[1:-1]}, "
                         f"{thousands(copy.bytes)} bytes")
        else:
            for tag in event.tags:
                self.write(tag)

    def _message(self, message: Message) -> None:
        paint = self.style.error if message.severity in ("ERROR", "FATAL", "PANIC") \
            else self.style.notice
        self.write(paint(f"{message.severity}:  {message.message}"))
        if message.detail:
            self.write(paint(f"DETAIL:  {message.detail}"))
        if message.hint:
            self.write(paint(f"HINT:  {message.hint}"))


def _literal(value: str | None) -> str:
    if value is None:
        return "NULL"
    return "'" + value.replace("'", "''") + "'"


class Pacer:
    """Sleeps between events as the session did: ``speed`` times faster, gaps capped."""

    def __init__(self, options: ReplayOptions, sleep: Callable[[float], None] = time.sleep
                 ) -> None:
        self._speed = options.speed
        self._off = options.instant or options.json or options.follow
        self._sleep = sleep
        self._last: float | None = None

    def wait(self, t: float) -> None:
        last, self._last = self._last, t
        if self._off or last is None or t <= last:
            return
        self._sleep(min((t - last) / self._speed, MAX_GAP_S))


def replay(reader: RecordingReader, facts: SessionFacts, check: Check, options: ReplayOptions,
           out: TextIO, *, gateway_running: Callable[[], bool] = lambda: False,
           recheck: Callable[[], Check] | None = None) -> int:
    """Show the recording; returns 0, or 1 if it does not match the journal or fails to
    authenticate (what authenticated before that point is still shown)."""
    sink = _JsonSink(out) if options.json else Transcript(
        out, Style(options.color), options.width)
    sink.verification(check)
    pacer = Pacer(options)
    ok = check.status.ok
    try:
        idle_since = time.monotonic()
        while True:
            progressed = False
            for event in reader.poll():
                progressed = True
                pacer.wait(event.t)
                sink.event(event)
                out.flush()
            if reader.complete or not options.follow:
                break
            if progressed:
                idle_since = time.monotonic()
            elif not gateway_running() and time.monotonic() - idle_since > FOLLOW_GIVE_UP_S:
                break
            time.sleep(FOLLOW_POLL_S)
    except RecordingTampered as e:
        sink.tampered(str(e))
        return EXIT_TAMPERED
    if not reader.complete:
        sink.incomplete(facts, reader.pending_bytes)
    if options.follow and recheck is not None:  # the end may have been journaled meanwhile
        final = recheck()
        deadline = time.monotonic() + FOLLOW_GIVE_UP_S
        while reader.complete and final.status is Status.INCOMPLETE and \
                time.monotonic() < deadline:  # the journal's session_end is a moment behind
            time.sleep(FOLLOW_POLL_S)
            final = recheck()
        sink.verification(final)
        ok = final.status.ok
    out.flush()
    return EXIT_OK if ok else EXIT_TAMPERED


def _incomplete_text(facts: SessionFacts, pending: int) -> str:
    why = ("the gateway stopped before the session ended" if facts.cut_off or facts.end is None
           else "the recording stops before the session's end")
    torn = f"; {pending} bytes of an unfinished chunk ignored" if pending else ""
    return f"recording ends here, INCOMPLETE: {why}{torn}"


class _JsonSink:
    """``--json``: one JSON object per line, the verification first."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def _emit(self, value: dict[str, object]) -> None:
        self.out.write(json.dumps(value, ensure_ascii=False) + "\n")

    def verification(self, check: Check) -> None:
        self._emit({"type": "verification", "status": check.status.value,
                    "ok": check.status.ok, "message": check.message})

    def event(self, event: Event) -> None:
        self._emit(to_json(event))

    def tampered(self, message: str) -> None:
        self._emit({"type": "tampered", "message": message})

    def incomplete(self, facts: SessionFacts, pending: int) -> None:
        self._emit({"type": "incomplete", "message": _incomplete_text(facts, pending)})


def use_color(choice: str, out: TextIO) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return out.isatty()
