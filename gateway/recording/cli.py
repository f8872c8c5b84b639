"""``phigate sessions list``, ``phigate replay``, and the recording options of other commands.

:func:`register` adds ``sessions`` and ``replay`` to ``phigate``'s
sub-parsers; :func:`extend_journal_commands` is the ``extend`` callback of
``gateway.journal.cli.register``: it adds ``--recordings RECDIR`` to
``journal verify`` and ``--recording-key PATH`` to ``keygen``. Both auditor
commands journal the access (``audit_access``) before showing anything, and
refuse when that is impossible. Exit codes as everywhere: 0 fine, 1 tampered
or refused, 2 usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path

from ..errors import ConfigError
from ..journal import JournalSettings
from ..journal.cli import reader_gone
from ..settings.config import RecordingSettings, Settings, load_config
from .binding import Check, SessionFacts, Status, check_all, check_recording, scan_journal
from .errors import RecordingError, RecordingKeyError, RecordingMissing
from .keys import generate_key_file, load_master_key
from .reader import RecordingReader
from .replay import ReplayOptions, replay, use_color
from .sessions import SessionFilter, format_rows, list_sessions
from .spool import (
    AccessNotRecorded,
    access_fields,
    gateway_running,
    record_access,
    spool_and_wait,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
Handler = Callable[[argparse.Namespace], int]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sessions list`` and ``replay``."""
    sessions = subparsers.add_parser("sessions", help="list recorded and journaled sessions")
    commands = sessions.add_subparsers(dest="sessions_command", required=True, metavar="{list}")
    listing = commands.add_parser("list", help="sessions from the journal, filtered")
    listing.add_argument("-c", "--config", required=True, help="path to phigate.yaml")
    listing.add_argument("--user", help="sessions of this identity")
    listing.add_argument("--database", help="sessions on this database")
    listing.add_argument("--since", help="started at or after (RFC 3339 or date; UTC default)")
    listing.add_argument("--until", help="started before")
    listing.add_argument("--denied", action="store_true", help="only sessions with a denial")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_as(listing)
    listing.set_defaults(func=sessions_list_command)

    play = subparsers.add_parser("replay", help="replay a recorded session as a psql transcript")
    play.add_argument("-c", "--config", required=True, help="path to phigate.yaml")
    play.add_argument("session", help="session id (or a unique prefix of one)")
    pace = play.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0,
                      help="play this many times faster (default 1; idle gaps capped at 2 s)")
    pace.add_argument("--instant", action="store_true", help="no pauses")
    play.add_argument("--follow", "-f", action="store_true",
                      help="attach to a live session and show statements as they happen")
    play.add_argument("--json", action="store_true", help="the decoded events as JSON lines")
    play.add_argument("--full", action="store_true",
                      help="show long values whole instead of fitting tables to the terminal")
    play.add_argument("--width", type=int, help="fit tables to this many columns")
    play.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    _add_as(play)
    play.set_defaults(func=replay_command)


def _add_as(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as", dest="acting_as", metavar="NAME",
                        help="who is looking, for the audit_access entry (besides the OS user)")


# ---------------------------------------------------------------- sessions list


def sessions_list_command(args: argparse.Namespace) -> int:
    settings = load_for_auditors(args.config)
    journal = _journal(settings)
    try:
        where = SessionFilter.parse(args.user, args.database, args.since, args.until,
                                    args.denied)
    except ValueError as e:
        return _fail(e, EXIT_USAGE)
    filters = {"user": args.user, "database": args.database, "since": args.since,
               "until": args.until, "denied": args.denied}
    try:
        _note(record_access(journal, access_fields("sessions list", acting_as=args.acting_as,
                                                   filters=filters)))
    except AccessNotRecorded as e:
        return _fail(e, EXIT_FAILED)
    rows = list_sessions(journal.dir, where)
    try:
        if args.json:
            for row in rows:
                print(json.dumps(row.as_json(), ensure_ascii=False))
        else:
            print("\n".join(format_rows(rows)))
        sys.stdout.flush()
    except BrokenPipeError:
        return reader_gone()
    return EXIT_OK


# ---------------------------------------------------------------- replay


def replay_command(args: argparse.Namespace) -> int:
    settings = load_for_auditors(args.config)
    journal, recordings = _journal(settings), _recordings(settings)
    options = _options(args)
    try:
        facts = _find_session(journal.dir, args.session)
        key = load_master_key(recordings)
        reader = RecordingReader(recordings.dir / str(facts.file), key)
    except RecordingMissing as e:
        print(f"phigate: session {args.session}: RECORDING MISSING: {e}", file=sys.stderr)
        return EXIT_FAILED
    except RecordingError as e:
        return _fail(e, EXIT_USAGE)
    with reader:
        try:
            reader.open()
            _note(record_access(journal, access_fields("replay", session=facts.session,
                                                       acting_as=args.acting_as)))
        except RecordingKeyError as e:
            return _fail(e, EXIT_USAGE)
        except (AccessNotRecorded, RecordingError) as e:
            return _fail(e, EXIT_FAILED)
        check = check_recording(recordings.dir, facts)
        if not check.status.ok:
            print(f"phigate: session {facts.session}: RECORDING DOES NOT MATCH THE JOURNAL: "
                  f"{check.message}", file=sys.stderr)
        try:
            return replay(reader, facts, check, options, sys.stdout,
                          gateway_running=partial(gateway_running, journal.dir),
                          recheck=partial(_recheck, journal.dir, recordings.dir, facts.session))
        except BrokenPipeError:
            return reader_gone()


def _options(args: argparse.Namespace) -> ReplayOptions:
    color = use_color(args.color, sys.stdout)
    width = args.width
    if width is None and not args.full and sys.stdout.isatty():
        width = shutil.get_terminal_size().columns
    if args.speed <= 0:
        raise ConfigError("--speed must be positive")
    return ReplayOptions(speed=args.speed, instant=args.instant, follow=args.follow,
                         json=args.json, color=color, width=None if args.full else width)


def _find_session(journal_dir: Path, wanted: str) -> SessionFacts:
    sessions = scan_journal(journal_dir)
    matches = [f for sid, f in sessions.items() if sid.startswith(wanted) and f.start]
    if len(matches) != 1:
        raise RecordingError(f"session {wanted!r} is not in the journal {journal_dir}"
                             if not matches else f"session prefix {wanted!r} is ambiguous")
    if not matches[0].recorded:
        raise RecordingError(f"session {matches[0].session} was not recorded")
    return matches[0]


def _recheck(journal_dir: Path, recordings_dir: Path, session: str) -> Check:
    facts = scan_journal(journal_dir, session=session)[session]
    return check_recording(recordings_dir, facts)


# ---------------------------------------------------------------- journal verify, keygen


def extend_journal_commands(name: str, parser: argparse.ArgumentParser) -> None:
    """The ``extend`` callback for ``gateway.journal.cli.register``."""
    inner: Handler = parser.get_default("func")
    if name == "journal verify":
        parser.add_argument("--recordings", type=Path, metavar="RECDIR",
                            help="also check every recording against the journal's digests")
        parser.set_defaults(func=partial(_verify_with_recordings, inner))
    elif name in ("journal show", "journal export"):
        _add_as(parser)
        parser.set_defaults(func=partial(_read_journal, inner, name))
    elif name == "keygen":
        parser.add_argument("--recording-key", type=Path, metavar="PATH",
                            help="write a recordings master key (32 random bytes, base64, 0600)")
        parser.set_defaults(func=partial(_keygen, inner))


def _read_journal(inner: Handler, command: str, args: argparse.Namespace) -> int:
    """Reading a live journal shows SQL text, which can hold PHI: journal the access first.

    A journal no gateway holds is an offline copy (an auditor's own); reading it is not
    journaled, and the auditor is told so.
    """
    if not Path(args.dir).is_dir() or not gateway_running(Path(args.dir)):
        print(f"phigate: note: no gateway holds {args.dir}; this read is not journaled",
              file=sys.stderr)
        return inner(args)
    filters = {k: getattr(args, k, None) for k in ("user", "session", "since", "until",
                                                   "type", "decision", "table", "format")}
    fields = access_fields(command, acting_as=args.acting_as, filters=filters)
    try:
        how = spool_and_wait(Path(args.dir), fields)
    except AccessNotRecorded as e:
        return _fail(e, EXIT_FAILED)
    _note(how)
    return inner(args)


def _verify_with_recordings(inner: Handler, args: argparse.Namespace) -> int:
    code = inner(args)
    if args.recordings is None or code == EXIT_USAGE:
        return code
    if not args.recordings.is_dir():
        return _fail(NotADirectoryError(f"{args.recordings} is not a directory"), EXIT_USAGE)
    checks, unknown = check_all(args.dir, args.recordings)
    counts = {status: sum(c.status is status for c in checks) for status in Status}
    bad = [c for c in checks if not c.status.ok]
    for check in bad:
        print(f"RECORDING TAMPERED: session {check.session}: {check.message}")
    for check in checks:
        if check.status in (Status.INCOMPLETE, Status.FAILED):
            print(f"note: session {check.session}: {check.message}")
    for file in unknown:
        print(f"note: {file} is not mentioned in this journal")
    print(f"recordings: {len(checks)} checked: {counts[Status.VERIFIED]} verified, "
          f"{counts[Status.INCOMPLETE]} incomplete, {counts[Status.FAILED]} failed while "
          f"recording, {len(bad)} missing or altered")
    return EXIT_FAILED if bad else code


def _keygen(inner: Handler, args: argparse.Namespace) -> int:
    if args.recording_key is None and args.path is None:
        return _fail(ValueError("give PATH (a journal signing key pair) and/or "
                                "--recording-key PATH"), EXIT_USAGE)
    if args.recording_key is not None:
        try:
            path = generate_key_file(args.recording_key)
        except (RecordingKeyError, OSError) as e:
            return _fail(e, EXIT_USAGE)
        print(f"wrote {path} (recordings master key; keep secret, mode 0600)")
    return inner(args) if args.path is not None else EXIT_OK


# ---------------------------------------------------------------- helpers


class _NoSecrets(Mapping[str, str]):
    """The environment, with every variable present: auditors read recordings and the journal,
    and need neither the upstream database passwords nor the alert sinks' secrets that the
    config names (the recording key is read from the real environment)."""

    def __getitem__(self, key: str) -> str:
        return os.environ.get(key, "")

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)


def load_for_auditors(path: str) -> Settings:
    """The config without the secrets only the gateway needs (also used by the console)."""
    return load_config(path, environ=_NoSecrets())


def _journal(settings: Settings) -> JournalSettings:
    if settings.journal is None:
        raise ConfigError("the config has no journal section", file=str(settings.source),
                          key="journal")
    return settings.journal


def _recordings(settings: Settings) -> RecordingSettings:
    if settings.recordings is None:
        raise ConfigError("the config has no recordings section: sessions are not recorded",
                          file=str(settings.source), key="recordings")
    return settings.recordings


def _note(text: str) -> None:
    print(f"phigate: access {text}", file=sys.stderr)


def _fail(error: Exception, code: int) -> int:
    print(f"phigate: {error}", file=sys.stderr)
    return code
